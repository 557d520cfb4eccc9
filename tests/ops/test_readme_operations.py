"""The README's operations walk-through uses only real commands and settings."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from typer.testing import CliRunner

from bqx.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def _operations_section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("\n## Operations\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def test_every_bqx_command_of_the_walkthrough_exists():
    from bqx.cli.main import app

    block = re.search(r"```bash\n(.*?)```", _operations_section(), re.DOTALL).group(1)
    commands = []
    for line in block.splitlines():
        words = shlex.split(line.split("#", 1)[0])
        if words and words[0] == "bqx":
            commands.append([w for w in words[1:] if not w.startswith(("-", "."))])
    assert len(commands) >= 7
    for words in commands:
        path = [w for w in words if re.fullmatch(r"[a-z-]+", w)][:2]
        result = CliRunner().invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)


def test_every_setting_named_in_the_section_exists():
    names = set(re.findall(r"BQX_[A-Z0-9_]+", _operations_section()))
    fields = {f"BQX_{n.upper()}" for n in Settings.model_fields}
    prefixes = {n.rstrip("_*") for n in names if n.endswith("_")}
    assert {n for n in names if not n.endswith("_")} <= fields
    assert all(any(f.startswith(p) for f in fields) for p in prefixes)
