"""``bqx validate raw|features``: the results table, Data Docs path, exit codes."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from bqx.cli.validate import register
from bqx.settings import get_settings
from bqx.warehouse import open_warehouse
from tests.expectations.conftest import PAIRS, load_bars


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def root() -> None:
        """bqx (test root)."""

    register(app)
    return app


def _run(app, *args):
    result = CliRunner().invoke(app, list(args))
    return result, " ".join(result.output.split())


def test_validate_raw_prints_results_and_blocks_on_critical(duck_settings, monkeypatch):
    monkeypatch.setenv("BQX_DATA_DIR", str(duck_settings.data_dir))
    monkeypatch.setenv("BQX_PAIRS", ",".join(PAIRS))
    get_settings.cache_clear()
    load_bars(duck_settings)
    app = _app()

    result, out = _run(app, "validate", "raw")
    assert result.exit_code == 0, out
    assert "raw_candles" in out and "market_open" in out and "pass" in out
    assert "passed: 15 expectations" in out
    index = duck_settings.data_dir / "quality" / "data_docs" / "index.html"
    assert f"Data Docs: {index}" in out and index.is_file()

    with open_warehouse(duck_settings) as wh:
        wh.execute(
            "update raw.candles_m1 set low = high + 0.01 where pair = 'EUR_USD' "
            "and bar_start = '2024-01-04 10:00:00+00:00'"
        )
    result, out = _run(app, "validate", "raw", "--no-docs")
    assert result.exit_code == 1
    assert "FAIL" in out
    assert "raw_candles.high_ge_low" in out
    assert "EUR_USD 2024-01-04T10:00:00+00:00" in out

    result, out = _run(app, "validate", "raw", "--since", "2024-01-05", "--no-docs")
    assert result.exit_code == 0, out

    result, out = _run(app, "validate", "features", "--no-docs")
    assert result.exit_code == 1
    assert "no tables in schema marts" in out and "bqx features build" in out
