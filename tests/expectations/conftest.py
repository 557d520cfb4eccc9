"""Module-scoped warehouses for the gate tests: simulated bars loaded once.

Three pairs forming a triangle (EUR_USD, USD_JPY, EUR_JPY), Wednesday 3 to Monday
8 January 2024: four trading days and a weekend, enough rows for every window.
"""

from __future__ import annotations

import os
import uuid

import pandas as pd
import pytest

from bqx.settings import Settings
from bqx.warehouse import open_warehouse
from ingestion.simulator import simulate_bars
from tests.conftest import PG_HOST, flush_redis, make_settings

PAIRS = ("EUR_USD", "USD_JPY", "EUR_JPY")
START, END = "2024-01-03", "2024-01-09"


def load_bars(settings: Settings) -> pd.DataFrame:
    """Load the simulated bars into the settings' warehouse; returns them."""
    bars = simulate_bars(list(PAIRS), START, END)
    with open_warehouse(settings) as wh:
        wh.ensure_schema()
        wh.upsert_candles(bars, source="simulator:M")
    return bars


@pytest.fixture(scope="module", params=["duckdb", "postgres"])
def module_settings(request, tmp_path_factory):
    """Settings on a fresh warehouse of each kind, for one test module."""
    base = tmp_path_factory.mktemp(f"gate_{request.param}") / "bqx"
    pairs = ",".join(PAIRS)
    if request.param == "duckdb":
        yield make_settings(base, pairs=pairs)
        return
    admin = request.getfixturevalue("pg_admin")
    name = f"bqx_gate_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin.execute(f'create database "{name}"')
    try:
        # the production deployment: PostgreSQL marts, Redis online store
        redis_db = request.getfixturevalue("redis_db")
        flush_redis(redis_db)
        yield make_settings(
            base,
            deployment="production",
            warehouse="postgres",
            pg_host=PG_HOST,
            pg_database=name,
            redis_db=redis_db,
            pairs=pairs,
        )
    finally:
        admin.execute(f'drop database if exists "{name}" with (force)')


def offending(report, suite: str, expectation: str) -> set[tuple[str, pd.Timestamp]]:
    """The (pair, time) keys a failed expectation named in its examples."""
    outcome = report.outcome(suite, expectation)
    return {
        (row["pair"], pd.Timestamp(row["bar_time"]).tz_convert("UTC"))
        for row in outcome.examples
    }


def failure_keys(settings: Settings, suite: str, expectation: str) -> set:
    """The (pair, time) keys stored in quality.failures for one expectation."""
    with open_warehouse(settings) as wh:
        frame = wh.query_df(
            "select pair, bar_time from quality.failures "
            f"where suite = '{suite}' and expectation = '{expectation}'"
        )
    return {
        (p, pd.Timestamp(t).tz_convert("UTC"))
        for p, t in zip(frame["pair"], frame["bar_time"])
    }
