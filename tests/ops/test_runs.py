"""Run history in ops.runs, on both warehouses."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest
import typer

from bqx.runs import (
    OPS_SCHEMA_VERSION,
    ensure_ops_schema,
    list_runs,
    record_run,
    schema_version,
)
from bqx.warehouse import open_warehouse
from tests.ops.conftest import use_settings


def test_ok_run_records_stage_rows_and_args(any_settings):
    with record_run(any_settings, "ingest csv", {"path": "a.csv", "n": 3}) as run:
        run.stage("read")
        run.stage("load")
        run.rows(10, 7)
        run.add_rows(2, 1)
    frame = list_runs(any_settings)
    assert len(frame) == 1
    row = frame.iloc[0]
    assert (row.command, row.status, row.stage) == ("ingest csv", "ok", "load")
    assert (int(row.rows_in), int(row.rows_out)) == (12, 8)
    assert json.loads(row.args) == {"n": 3, "path": "a.csv"}
    assert row.run_id == run.run_id and row.ended_at >= row.started_at
    assert row.error is None


def test_failed_run_names_the_stage_and_reraises(any_settings):
    failing = record_run(any_settings, "features build")
    with pytest.raises(ValueError, match="bad bar at line 4"), failing as run:
        run.stage("dbt build")
        raise ValueError("bad bar at line 4")
    row = list_runs(any_settings).iloc[0]
    assert (row.status, row.stage) == ("failed", "dbt build")
    assert row.error == "ValueError: bad bar at line 4"


def test_exit_codes_decide_the_status(any_settings):
    with pytest.raises(typer.Exit), record_run(any_settings, "quiet"):
        raise typer.Exit(0)
    with pytest.raises(typer.Exit), record_run(any_settings, "bad exit"):
        raise typer.Exit(1)
    statuses = dict(zip(*list_runs(any_settings)[["command", "status"]].T.values))
    assert statuses == {"quiet": "ok", "bad exit": "failed"}


def test_last_n_newest_first_and_empty_history(any_settings):
    assert list_runs(any_settings).empty
    for i in range(4):
        with record_run(any_settings, f"cmd{i}"):
            pass
    frame = list_runs(any_settings, last=2)
    assert list(frame.command) == ["cmd3", "cmd2"]


def test_ops_schema_is_idempotent_and_versioned(any_settings):
    with open_warehouse(any_settings) as wh:
        assert schema_version(wh) is None
        ensure_ops_schema(wh)
        ensure_ops_schema(wh)
        assert schema_version(wh) == OPS_SCHEMA_VERSION
        wh.execute("update ops.schema_version set version = 99")
        ensure_ops_schema(wh)  # never downgrades a newer schema
        assert schema_version(wh) == 99


def test_duckdb_file_is_free_during_the_command(duck_settings):
    code = (
        "import duckdb, sys; c = duckdb.connect(sys.argv[1]); "
        "c.execute('create table t_other as select 1 as x'); c.close()"
    )
    with record_run(duck_settings, "holds nothing") as run:
        subprocess.run(
            [sys.executable, "-c", code, str(duck_settings.duckdb_path)], check=True
        )
        run.rows(1, 1)
    assert list_runs(duck_settings).iloc[0].status == "ok"


def test_unusable_warehouse_never_hides_the_outcome(duck_settings, caplog):
    duck_settings.duckdb_path.mkdir(parents=True)  # a folder: DuckDB cannot open it
    caplog.set_level(logging.WARNING, logger="bqx.runs")
    with pytest.raises(KeyError, match="own error"), record_run(duck_settings, "x"):
        raise KeyError("the command's own error")
    assert "cannot record run" in caplog.text
    assert str(duck_settings.duckdb_path) in caplog.text


def test_runs_command_shows_failures(any_settings, cli, monkeypatch):
    use_settings(monkeypatch, any_settings)
    result = cli("runs")
    assert result.exit_code == 0 and "no runs recorded yet" in result.output
    with record_run(any_settings, "publish") as run:
        run.rows(5, 5)
    with pytest.raises(RuntimeError), record_run(any_settings, "validate") as run:
        run.stage("raw suite")
        raise RuntimeError("3 expectations failed")
    result = cli("runs", "--last", "1")
    assert result.exit_code == 0, result.output
    assert "validate" in result.output and "publish" not in result.output
    assert "raw suite" in result.output and "3 expectations failed" in result.output
    result = cli("runs", "-n", "5")
    assert "publish" in result.output and "failed" in result.output
    assert cli("runs", "--last", "0").exit_code != 0


def test_recorded_decorator_on_a_typer_command(any_settings, monkeypatch):
    from typer.testing import CliRunner

    from bqx.runs import current_run, recorded

    app = typer.Typer()

    @app.command("load")
    @recorded("ingest load")
    def load(
        rows: int = typer.Option(3, help="How many rows."),
        password: str = typer.Option("", help="A secret option."),
        fail: bool = typer.Option(False),
    ) -> None:
        """Load rows."""
        current_run().stage("load")
        current_run().add_rows(rows, rows - 1)
        if fail:
            raise RuntimeError(f"lost {rows} rows")

    use_settings(monkeypatch, any_settings)
    runner = CliRunner()
    assert "How many rows" in runner.invoke(app, ["--help"]).output
    ok = runner.invoke(app, ["--rows", "5", "--password", "pw-123456"])
    assert ok.exit_code == 0, ok.output
    bad = runner.invoke(app, ["--fail"])
    assert isinstance(bad.exception, RuntimeError)
    frame = list_runs(any_settings)
    failed, done = frame.iloc[0], frame.iloc[1]
    assert (done.status, int(done.rows_in), int(done.rows_out)) == ("ok", 5, 4)
    assert json.loads(done.args) == {"fail": False, "password": "***", "rows": 5}
    assert (failed.status, failed.stage) == ("failed", "load")
    assert failed.error == "RuntimeError: lost 3 rows"
    assert current_run().run_id == ""  # outside a command: a detached handle
