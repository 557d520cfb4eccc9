"""DuckDB: the tail cuts that int_candles_numbered stores for the marts of a run
(bqx_store_tail_cuts), and the marts' own query when a mart is not up to date.

Bars of three pairs are built in full. Part of a new day is then refreshed for
only two marts (features_idx, features_reg), so the others fall behind. The
rest of the day is refreshed for all models: the two up-to-date marts read the
cuts stored for them; the marts that are behind are left out of the stored cuts
and find their own, from the older bar they stopped at. Every mart must then
equal a full rebuild.
"""

from __future__ import annotations

import pandas as pd
import pytest

from bqx.settings import Settings
from ingestion.simulator import simulate_bars
from tests.dbt import reference
from tests.dbt.conftest import load, query, run_dbt, run_sql

PAIRS = ["EUR_USD", "GBP_USD", "EUR_GBP"]
START, SPLIT, MIDDAY, END = "2024-01-08", "2024-01-10", "2024-01-10 12:00", "2024-01-11"
MARTS = list(reference.MARTS)
UP_TO_DATE = ["features_idx", "features_reg"]


@pytest.fixture(scope="module")
def refreshed(tmp_path_factory):
    settings = Settings(
        _env_file=None, data_dir=tmp_path_factory.mktemp("bqx_cuts"), deployment="local"
    )
    bars = simulate_bars(PAIRS, START, END, seed=5)
    start = bars["bar_start"]
    load(settings, bars[start < SPLIT])
    run_dbt(settings, "run", pairs=PAIRS)
    load(settings, bars[(start >= SPLIT) & (start < pd.Timestamp(MIDDAY, tz="UTC"))])
    run_dbt(settings, "run", "--select", "int_candles_numbered", *UP_TO_DATE, pairs=PAIRS)
    afternoon = bars[start >= pd.Timestamp(MIDDAY, tz="UTC")]
    load(settings, afternoon)
    run_dbt(settings, "run", pairs=PAIRS)
    last_batch = query(
        settings,
        "select batch_id from intermediate.int_candles_numbered "
        "order by ingested_at desc limit 1",
    )["batch_id"].iloc[0]
    stored = query(
        settings,
        "select model, pair, cut_at from intermediate.int_candles_numbered__tail_cuts "
        f"where invocation_id = '{last_batch}'",
    )
    incremental = {m: query(settings, f"select * from marts.{m}") for m in MARTS}
    main_sql = run_sql(settings, MARTS)
    run_dbt(settings, "run", "--full-refresh", pairs=PAIRS)
    full = {m: query(settings, f"select * from marts.{m}") for m in MARTS}
    return {
        "stored": stored,
        "main_sql": main_sql,
        "incremental": incremental,
        "full": full,
        "first_new": afternoon.groupby("pair")["bar_start"].min(),
    }


def test_only_up_to_date_marts_get_stored_cuts(refreshed):
    stored = refreshed["stored"]
    assert sorted(stored.loc[stored["pair"].isna(), "model"]) == sorted(UP_TO_DATE)
    cuts = stored.dropna(subset=["pair"])
    assert sorted(cuts["model"].unique()) == sorted(UP_TO_DATE)
    for row in cuts.itertuples():
        assert pd.Timestamp(row.cut_at) == refreshed["first_new"][row.pair], row


def test_marts_without_stored_cuts_take_dbt_duckdbs_path(refreshed):
    """The up-to-date marts are written in one statement by the project's
    materialization; the others by dbt-duckdb's (temp table, delete joined on
    the unique key), then exported: both must equal a full rebuild below."""
    for mart, sql in refreshed["main_sql"].items():
        one_statement = f'insert into "warehouse"."marts"."{mart}" by name' in sql
        assert one_statement == (mart in UP_TO_DATE), mart
        assert ("DBT_INCREMENTAL_TARGET" in sql) == (mart not in UP_TO_DATE), mart


@pytest.mark.parametrize("mart", MARTS)
def test_every_mart_equals_a_full_rebuild(refreshed, mart):
    full = refreshed["full"][mart].drop(columns=["event_timestamp"])
    full["bar_start_at"] = pd.to_datetime(full["bar_start_at"], utc=True)
    full = full.astype({c: "float64" for c in full.columns[2:]})
    got = refreshed["incremental"][mart]
    assert len(got) == len(full)
    assert reference.compare(mart, got, full, rtol=1e-9) == []
