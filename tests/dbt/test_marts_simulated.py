"""Exactness of every mart on simulated bars, and incremental == full rebuild.

One build per adapter (module fixture): bars up to SPLIT are loaded and built,
then one more trading day is appended and refreshed incrementally; the marts
are read, rebuilt with --full-refresh and read again. The reference is the
independent numpy/pandas implementation in reference.py, on the same raw bars.
The universe (6 pairs: all four correlation categories, two triangles)
spans a weekend gap and has the simulator's missing minutes; about 4,500 bars
per pair before the split, so every window (up to 2,880) has values and the
refresh reads a full lookback. The day is refreshed in two runs: all but its
last minutes (a long tail), then those minutes (a short tail, as `bqx features
follow` refreshes: PostgreSQL computes window extrema per written row).
"""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest

from bqx import features
from ingestion.simulator import simulate_bars
from tests.dbt import reference
from tests.dbt.conftest import (
    PER_ROW_MARTS,
    compiled_per_row,
    load,
    query,
    raw_bars,
    run_dbt,
    run_sql,
)

PAIRS = ["AUD_USD", "EUR_GBP", "EUR_JPY", "EUR_USD", "GBP_USD", "USD_JPY"]
START, SPLIT, END = "2024-01-04", "2024-01-09", "2024-01-10"
LAST_MINUTES = "2024-01-09 23:56"  # bars from here arrive in a third run
MARTS = list(reference.MARTS)


@pytest.fixture(scope="module")
def built(adapter_settings):
    settings = adapter_settings
    bars = simulate_bars(PAIRS, START, END)
    first = bars[bars["bar_start"] < SPLIT]
    load(settings, first)
    run_dbt(settings, "run", pairs=PAIRS)
    written = {}  # Parquet file -> mtime after the first build (DuckDB)
    groups = {}  # rows per row group of a mart: after dbt's build, after a load
    if settings.warehouse == "duckdb":
        written = {p: p.stat().st_mtime_ns for p in settings.marts_dir.glob("*/*")}
        groups["built"] = row_groups(settings, "marts.features_reg")
    last = bars["bar_start"] >= pd.Timestamp(LAST_MINUTES, tz="UTC")
    load(settings, bars[(bars["bar_start"] >= SPLIT) & ~last])
    if settings.warehouse == "duckdb":
        groups["loaded"] = row_groups(settings, "marts.features_reg")
    run_dbt(settings, "build", pairs=PAIRS)
    load(settings, bars[last])
    run_dbt(settings, "run", pairs=PAIRS)
    per_row = compiled_per_row(settings)  # the short tail's plan (bqx_per_row_tail)
    batches = query(
        settings,
        "select batch_id, count(*) as n from intermediate.int_candles_numbered "
        "group by batch_id order by n desc",
    )
    stored_cuts = None  # DuckDB: the cuts int_candles_numbered stored for the marts
    if settings.warehouse == "duckdb":
        stored_cuts = query(
            settings,
            "select model, pair, cut_at, write_at, days "
            "from intermediate.int_candles_numbered__tail_cuts "
            f"where invocation_id = '{batches['batch_id'].iloc[-1]}'",
        )
    main_sql = run_sql(settings, MARTS)  # each mart's write of the last run
    incremental = {m: query(settings, f"select * from marts.{m}") for m in MARTS}
    parquet = {}
    if settings.warehouse == "duckdb":  # what Feast reads: <mart>/<day>.parquet
        parquet = {m: pd.read_parquet(settings.marts_dir / m) for m in MARTS}
        days = sorted(p.name for p in (settings.marts_dir / "features_bqx").iterdir())
        rewritten = sorted(
            {p.name for p, t in written.items() if p.stat().st_mtime_ns != t}
        )
    if parquet:  # a day that is no longer in the warehouse
        stale = settings.marts_dir / "features_bqx" / "2023-12-29.parquet"
        stale.write_bytes((settings.marts_dir / "features_bqx" / days[0]).read_bytes())
        os.utime(stale, (0, 0))  # written long ago
    # bqx's own entry point this time (same project, same profiles)
    subset = settings.model_copy(update={"pairs": ",".join(PAIRS)})
    features.build(subset, full_refresh=True, command="run")
    stale_left = parquet and stale.exists()
    full = {m: query(settings, f"select * from marts.{m}") for m in MARTS}
    ref = reference.compute_all(raw_bars(settings))
    return {
        "row_groups": groups,
        "incremental": incremental,
        "full": full,
        "ref": ref,
        "batches": batches,
        "n_first": len(first),
        "n_last": int(last.sum()),
        "per_row": per_row,
        "stored_cuts": stored_cuts,
        "main_sql": main_sql,
        "bars": bars,
        "last_minutes": bars[last].groupby("pair")["bar_start"].min(),
        "n_all": len(bars),
        "parquet": parquet,
        "stale_day_left": stale_left,
        "parquet_days": days if parquet else [],
        "parquet_rewritten": rewritten if parquet else [],
        "bar_days": sorted(
            f"{d:%Y-%m-%d}.parquet"
            for d in bars["bar_start"].dt.tz_convert("UTC").dt.date.unique()
        ),
    }


def row_groups(settings, table: str) -> list[int]:
    """Rows of each row group of a DuckDB table, in order."""
    return query(
        settings,
        "select row_group_id, sum(count) as n "
        f"from pragma_storage_info('{table}') where column_path = '[0]' "
        "group by row_group_id order by row_group_id",
    )["n"].astype(int).tolist()


def test_duckdb_writers_share_the_row_group_size(built, adapter_settings):
    """dbt (the profile's attach) writes row groups of the settings' size, and a
    load through bqx (its own attach) leaves them as they are: a writer with
    another size regroups every table of the file at its checkpoint."""
    if adapter_settings.warehouse != "duckdb":
        pytest.skip("row groups are DuckDB's")
    size = adapter_settings.duckdb_row_group_size
    built_groups = built["row_groups"]["built"]
    assert len(built_groups) >= 2 and max(built_groups) <= size  # not DuckDB's 122,880
    assert built["row_groups"]["loaded"] == built_groups


def test_refresh_rewrote_only_new_bars(built):
    batches = built["batches"]
    assert len(batches) == 3
    assert batches["n"].tolist() == [
        built["n_first"],
        built["n_all"] - built["n_first"] - built["n_last"],
        built["n_last"],
    ]


def test_short_tail_plan_is_per_row_on_postgres_only(built, adapter_settings):
    # the final frames of the short tail are compared with the full rebuild and
    # the reference below; this shows which plan produced them
    expected = adapter_settings.warehouse == "postgres"
    assert built["per_row"] == {m: expected for m in PER_ROW_MARTS}


def test_short_tail_cuts_were_stored_once_for_every_mart(built, adapter_settings):
    """DuckDB: int_candles_numbered computed the marts' tail cuts for the run
    (bqx_store_tail_cuts), and each pair's cut is its first new bar; the marts
    read them instead of each scanning the bars (the frames compared below
    come from that run)."""
    if adapter_settings.warehouse != "duckdb":
        pytest.skip("PostgreSQL's marts read their cuts by index walks")
    stored = built["stored_cuts"]
    assert sorted(stored["model"].unique()) == sorted(MARTS)
    markers = stored[stored["pair"].isna()]
    assert sorted(markers["model"]) == sorted(MARTS)  # one per mart: computed
    cuts = stored.dropna(subset=["pair"])
    first_new = built["last_minutes"]
    assert len(cuts) == len(MARTS) * len(first_new)
    for row in cuts.itertuples():
        assert pd.Timestamp(row.cut_at) == first_new[row.pair], row


def test_stored_tail_says_what_each_mart_rewrites(built, adapter_settings):
    """DuckDB: with the cuts, the first bar each mart rewrites (the cut; the
    labels' horizon earlier for labels_forward; the earliest cut for every pair
    of a cross-pair mart) and the days those rows fall in; every mart of the
    run was then written by the project's materialization in one statement
    (delete by range, insert from its query, the day's Parquet file), not by
    dbt-duckdb's temp table and key join."""
    if adapter_settings.warehouse != "duckdb":
        pytest.skip("PostgreSQL keeps dbt's incremental materialization")
    stored = built["stored_cuts"]
    first_new = built["last_minutes"]
    bars = built["bars"].sort_values(["pair", "bar_start"])
    horizon = 105  # max of the horizons var
    for row in stored.dropna(subset=["pair"]).itertuples():
        if row.model == "labels_forward":
            starts = bars.loc[bars["pair"] == row.pair, "bar_start"].reset_index(drop=True)
            n = starts[starts == first_new[row.pair]].index[0]
            expected = starts[n - horizon]
        elif row.model in ("features_corr", "features_strength", "features_tri"):
            expected = first_new.min()
        else:
            expected = first_new[row.pair]
        assert pd.Timestamp(row.write_at) == expected, row
    markers = stored[stored["pair"].isna()]
    assert set(markers["days"]) == {"2024-01-09"}
    for mart, sql in built["main_sql"].items():
        assert f'insert into "warehouse"."marts"."{mart}" by name' in sql, mart
        assert "DBT_INCREMENTAL_TARGET" not in sql, mart
        assert f"/{mart}/2024-01-09.parquet" in sql, mart


@pytest.mark.parametrize("mart", MARTS)
def test_full_build_matches_reference(built, mart):
    assert reference.compare(mart, built["full"][mart], built["ref"][mart]) == []


@pytest.mark.parametrize("mart", MARTS)
def test_incremental_refresh_matches_reference(built, mart):
    assert reference.compare(mart, built["incremental"][mart], built["ref"][mart]) == []


@pytest.mark.parametrize("mart", MARTS)
def test_incremental_refresh_equals_full_rebuild(built, mart):
    """Same rows, same nulls, same values up to float64 running-sum rounding."""
    full = built["full"][mart].drop(columns=["event_timestamp"])
    full["bar_start_at"] = pd.to_datetime(full["bar_start_at"], utc=True)
    full = full.astype({c: "float64" for c in full.columns[2:]})
    assert reference.compare(mart, built["incremental"][mart], full, rtol=1e-9) == []


def test_refreshed_parquet_copy_equals_the_marts(built, adapter_settings):
    """After the refresh, which rewrote only the days it touched, the Parquet
    folders hold every mart row exactly once, a file per UTC day."""
    if adapter_settings.warehouse != "duckdb":
        pytest.skip("the Parquet copy is written on DuckDB only")
    assert built["parquet_days"] == built["bar_days"]
    # the refresh rewrote the day before the split (labels see new bars; a
    # day's file is rewritten whole), never the earlier days
    assert built["parquet_rewritten"] == ["2024-01-08.parquet"]
    # `bqx features build --full-refresh` drops the files of days that left
    assert built["stale_day_left"] is False
    for mart in MARTS:
        key = ["pair", "bar_start_at"]
        a = built["parquet"][mart].sort_values(key).reset_index(drop=True)
        b = built["incremental"][mart].sort_values(key).reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b, check_dtype=False, obj=mart)


def test_marts_have_rows_for_every_bar(built):
    n_bars = built["n_all"]
    for mart in MARTS:
        assert len(built["full"][mart]) == n_bars, mart


def test_families_are_not_all_null(built):
    """Guards against a reference and a warehouse agreeing on nothing."""
    for mart, frame in built["full"].items():
        for col in frame.columns[3:]:
            assert frame[col].notna().any(), f"{mart}.{col} is null everywhere"


def test_docs_generate_describes_every_column(built, adapter_settings):
    """`dbt docs generate` works and every mart column has a description."""
    if adapter_settings.warehouse != "duckdb":
        pytest.skip("descriptions are adapter independent: checked once, on DuckDB")
    run_dbt(adapter_settings, "docs", "generate", pairs=PAIRS)
    target = adapter_settings.data_dir / "dbt_target"
    manifest = json.loads((target / "manifest.json").read_text())
    catalog = json.loads((target / "catalog.json").read_text())
    missing = []
    for mart in MARTS:
        uid = f"model.bqx.{mart}"
        described = manifest["nodes"][uid]["columns"]
        for column in catalog["nodes"][uid]["columns"]:
            if not described.get(column, {}).get("description"):
                missing.append(f"{mart}.{column}")
    assert missing == []


def test_bad_pair_in_universe_is_named(built, adapter_settings):
    if adapter_settings.warehouse != "duckdb":
        pytest.skip("compile-time check, adapter independent: checked on DuckDB")
    env_settings = adapter_settings
    import subprocess

    from tests.dbt.conftest import DBT, PROJECT

    done = subprocess.run(
        [str(DBT), "compile", "-s", "stg_oanda__candles", "--project-dir", str(PROJECT),
         "--profiles-dir", str(PROJECT), "--target-path", str(env_settings.data_dir / "t2"),
         "--vars", "{pairs: 'EUR_USD,EURGBP'}"], check=False,
        env={**os.environ, **env_settings.as_env()}, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode != 0
    assert "bad pair id 'EURGBP'" in done.stdout
