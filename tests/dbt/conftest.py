"""Fixtures of the dbt tests: a warehouse per adapter, loaded, built by real dbt.

Each case builds once per module (the builds are the slow part) and every family
is compared from that one build.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pandas as pd
import pytest

from bqx.settings import Settings
from bqx.warehouse import open_warehouse

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ROOT / "dbt_project"
DBT = Path(sys.executable).parent / "dbt"
#: marts with a per-row plan for a short PostgreSQL tail (bqx_per_row_tail) ->
#: an alias that only that plan's compiled SQL has
PER_ROW_MARTS = {
    "features_bqx": "as lagged",
    "features_vwap": "as lagged",
    "features_reg": "as lagged",
    "features_volatility": "as window_rows",
    "features_corr": "as link_walk",
}


def compiled_per_row(settings: Settings) -> dict[str, bool]:
    """Which plan the last dbt run compiled, per mart of PER_ROW_MARTS."""
    compiled = settings.data_dir / "dbt_target" / "compiled" / "bqx" / "models" / "marts"
    return {
        m: alias in (compiled / f"{m}.sql").read_text() for m, alias in PER_ROW_MARTS.items()
    }


def run_sql(settings: Settings, marts: list[str]) -> dict[str, str]:
    """The SQL each mart's materialization ran to write it in the last dbt run."""
    run = settings.data_dir / "dbt_target" / "run" / "bqx" / "models" / "marts"
    return {m: (run / f"{m}.sql").read_text() for m in marts}


def run_dbt(settings: Settings, *args: str, pairs: list[str] | None = None) -> str:
    """Run the dbt CLI on the committed project and profiles; fail with its log."""
    env = {**os.environ, **settings.as_env()}
    cmd = [
        str(DBT),
        *args,
        "--project-dir",
        str(PROJECT),
        "--profiles-dir",
        str(PROJECT),
    ]
    cmd += ["--target", settings.warehouse]
    if pairs is not None:
        cmd += ["--vars", "{pairs: '" + ",".join(pairs) + "'}"]
    log_dir = settings.data_dir / "dbt_logs"
    cmd += [
        "--log-path",
        str(log_dir),
        "--target-path",
        str(settings.data_dir / "dbt_target"),
    ]
    done = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    if done.returncode != 0:
        pytest.fail(
            f"dbt {' '.join(args)} failed:\n{done.stdout[-6000:]}{done.stderr[-2000:]}"
        )
    return done.stdout


def query(settings: Settings, sql: str) -> pd.DataFrame:
    """A query on the warehouse the settings point at."""
    warehouse = open_warehouse(settings)
    try:
        return warehouse.query_df(sql)
    finally:
        warehouse.close()


def load(settings: Settings, bars: pd.DataFrame, source: str = "sim") -> None:
    """Upsert simulator-shaped bars into raw.candles_m1."""
    warehouse = open_warehouse(settings)
    try:
        warehouse.ensure_schema()
        warehouse.upsert_candles(bars, source=source)
    finally:
        warehouse.close()


def raw_bars(settings: Settings) -> pd.DataFrame:
    """raw.candles_m1 as the reference reads it."""
    return query(
        settings,
        "select pair, bar_start, open, high, low, close, volume from raw.candles_m1",
    )


@pytest.fixture(scope="module")
def module_pg_database(pg_admin):
    """A fresh PostgreSQL database for one test module, dropped afterwards."""
    name = f"bqx_dbt_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    pg_admin.execute(f'create database "{name}"')
    yield name
    pg_admin.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture(scope="module", params=["duckdb", "postgres"])
def adapter_settings(request, tmp_path_factory) -> Settings:
    """Settings of a fresh warehouse per adapter, for one test module."""
    data_dir = tmp_path_factory.mktemp(f"bqx_{request.param}")
    overrides = {"data_dir": data_dir, "deployment": "local"}
    if request.param == "postgres":
        overrides.update(
            warehouse="postgres",
            pg_host="127.0.0.1",
            pg_user="postgres",
            pg_database=request.getfixturevalue("module_pg_database"),
        )
    return Settings(_env_file=None, **overrides)
