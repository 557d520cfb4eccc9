"""Benchmark: the data-quality gate on 28 pairs x 1 month of M1 bars (DuckDB).

Loads simulated bars of the universe into a scratch DuckDB warehouse, then times
``expectations.validate(settings, "raw")`` (every raw rule through GX's SQL
datasource: the database answers, nothing is loaded into pandas), a second run
(warm GX context), an incremental run (``--since`` the last day) and Data Docs.
With ``--features`` it also builds the marts with dbt (not timed as the gate) and
times ``validate(settings, "features")``. ``--postgres`` runs the same on a scratch
PostgreSQL database.

Usage: ``python benchmarks/bench_validate.py [--days 31] [--pairs all]
[--features] [--postgres]``. Target (issue 6): 28 pairs x 1 month under 60 s.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))  # the repo root (expectations/), as pytest has

from common import (  # noqa: E402
    figure,
    peak_rss_mib,
    scratch_pg_database,
    scratch_settings,
    timer,
)

from bqx.pairs import UNIVERSE_28, resolve_pairs  # noqa: E402
from bqx.warehouse import open_warehouse  # noqa: E402
from expectations import build_data_docs, validate  # noqa: E402
from ingestion.simulator import simulate_bars  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=31)
    parser.add_argument("--pairs", default="all", help="comma list or `all` (28)")
    parser.add_argument("--start", default="2024-01-01")
    parser.add_argument("--features", action="store_true", help="also the marts")
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL too")
    args = parser.parse_args()
    pairs = list(UNIVERSE_28) if args.pairs == "all" else resolve_pairs(
        args.pairs.split(",")
    )
    start = pd.Timestamp(args.start, tz="UTC")
    end = start + pd.Timedelta(days=args.days)
    bars = simulate_bars(pairs, start, end)
    print(f"{len(bars):,} bars: {len(pairs)} pairs x {args.days} days from {start}")
    run("duckdb", scratch_settings(pairs=",".join(pairs)), bars, end, args.features)
    if args.postgres:
        with scratch_pg_database() as name:
            settings = scratch_settings(
                pairs=",".join(pairs), warehouse="postgres", pg_database=name
            )
            run("postgres", settings, bars, end, args.features)


def run(kind, settings, bars, end, features: bool) -> None:
    """Load the bars, then time the gate on one warehouse."""
    with open_warehouse(settings) as wh:
        wh.ensure_schema()
        wh.upsert_candles(bars, source="simulator:M")
    ctx = f"{kind}, {len(bars):,} bars"
    with timer() as t:
        report = validate(settings, "raw")
    figure(f"validate raw, cold ({kind})", t(), "s", ctx + ", incl. GX import")
    assert report.passed, report.failure_message()
    with timer() as t:
        validate(settings, "raw")
    figure(f"validate raw, warm ({kind})", t(), "s", ctx)
    figure(f"validate raw rate ({kind})", len(bars) / t(), "bars/s", ctx)
    since = end - pd.Timedelta(days=1)
    with timer() as t:
        validate(settings, "raw", since=since)
    figure(f"validate raw --since last day ({kind})", t(), "s", ctx)
    with timer() as t:
        build_data_docs(settings)
    figure(f"build Data Docs ({kind})", t(), "s")
    if features:
        from bqx.features import build

        with timer() as t:
            build(settings, command="run")
        figure(f"dbt run, all marts ({kind}; not the gate)", t(), "s", ctx)
        with open_warehouse(settings) as wh:
            count = wh.query_df("select count(*) as n from marts.features_reg")
        rows = int(count["n"][0])
        with timer() as t:
            report = validate(settings, "features")
        context = f"{rows:,} rows per mart"
        figure(f"validate features, all marts ({kind})", t(), "s", context)
        if not report.passed:
            print(report.failure_message())
    figure("peak RSS", peak_rss_mib(), "MiB")


if __name__ == "__main__":
    main()
