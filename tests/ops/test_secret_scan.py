"""The secret scanner: the committed baseline is valid, new findings fail.

CI runs the same hook over every tracked file (see the Makefile); here it runs over
the operations files and over a planted secret.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HOOK = Path(sys.executable).with_name("detect-secrets-hook")
OPS_FILES = [
    "bqx/secrets.py", "bqx/doctor.py", "bqx/runs.py", "bqx/cli/ops.py",
    "docker-compose.yml", ".env.example",
    *(str(p.relative_to(ROOT)) for p in sorted((ROOT / "tests/ops").glob("*.py"))),
]  # fmt: skip


@pytest.fixture
def baseline(tmp_path) -> Path:
    """A copy of the committed baseline (the hook may rewrite line numbers)."""
    if not HOOK.exists():
        pytest.fail(
            "detect-secrets is not installed: pip install detect-secrets==1.5.0"
        )
    copy = tmp_path / "baseline.json"
    shutil.copy(ROOT / ".secrets.baseline", copy)
    return copy


def _hook(baseline: Path, *files: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(HOOK), "--baseline", str(baseline), *map(str, files)],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_baseline_is_valid_and_scans_with_plugins(baseline):
    data = json.loads(baseline.read_text())
    names = {p["name"] for p in data["plugins_used"]}
    assert {"AWSKeyDetector", "KeywordDetector", "BasicAuthDetector"} <= names
    assert isinstance(data["results"], dict)


def test_operations_files_have_no_new_finding(baseline):
    result = _hook(baseline, *OPS_FILES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_new_secret_fails_the_scan(baseline, tmp_path):
    leak = tmp_path / "leak.py"
    key = "AKIA" + "Z7QXMW3PLK5RT2VB"  # built here so this file holds no key
    leak.write_text(f'aws_access_key_id = "{key}"\n')
    result = _hook(baseline, leak)
    assert result.returncode == 1
    assert "AWS Access Key" in result.stdout
