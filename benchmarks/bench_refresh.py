"""One-minute refresh on PostgreSQL at two history lengths (issues 4 and 5).

For each history (default 2 and 14 days of the 28 majors, simulated), a fresh
PostgreSQL database is loaded and fully built; then, as ``bqx features follow``
does, dbt runs in this process from a project parsed once
(:class:`bqx.features.FeatureRefresher`): one new minute of bars is stored and
the incremental ``dbt run`` plus the push of the newest rows online are timed,
``--reps`` times. A refresh that reads only its tail costs the same whatever the
history; one that scans it grows with it.

Usage: ``python benchmarks/bench_refresh.py [--days 2 14] [--reps 5]``
(PostgreSQL and Redis as in the tests; Redis db 12 is flushed).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import figure, scratch_pg_database, scratch_settings  # noqa: E402

from bqx import features  # noqa: E402
from bqx.pairs import UNIVERSE_28  # noqa: E402
from bqx.warehouse import open_warehouse  # noqa: E402
from ingestion.simulator import simulate_bars  # noqa: E402

PAIRS = list(UNIVERSE_28)
END = pd.Timestamp("2024-01-18", tz="UTC")  # a Thursday: the next minutes trade


def one_history(days: int, reps: int) -> None:
    import redis

    with scratch_pg_database() as db:
        settings = scratch_settings(
            deployment="production", pg_database=db, redis_db=12, pairs=",".join(PAIRS)
        )
        redis.Redis(port=settings.redis_port, db=12).flushdb()
        bars = simulate_bars(PAIRS, END - pd.Timedelta(days=days), END, seed=2)
        with open_warehouse(settings) as wh:
            wh.ensure_schema()
            wh.upsert_candles(bars, source="simulator:M")
        features.build(settings, command="run")
        features.publish(settings)
        refresher = features.FeatureRefresher(settings)
        refresher.new_bars()
        last = bars["bar_start"].max()
        dbt_s, push_s, slowest = [], [], {}
        for k in range(1, reps + 1):
            new = simulate_bars(PAIRS, last, last + pd.Timedelta(minutes=k + 1), seed=9)
            new = new[new["bar_start"] == last + pd.Timedelta(minutes=k)]
            with open_warehouse(settings) as wh:
                wh.upsert_candles(new, source="simulator:M")
            assert refresher.new_bars()
            t0 = time.perf_counter()
            node_s = refresher.run_models()
            t1 = time.perf_counter()
            refresher.push()
            t2 = time.perf_counter()
            dbt_s.append(t1 - t0)
            push_s.append(t2 - t1)
            for name, seconds in node_s.items():
                slowest.setdefault(name, []).append(seconds)
        top = sorted(slowest.items(), key=lambda kv: -statistics.median(kv[1]))[:3]
        figure(
            f"one-minute refresh, {days} days of history: incremental dbt run (warm)",
            statistics.median(dbt_s),
            "s",
            f"median of {reps}; {len(bars):,} bars; slowest models "
            + ", ".join(f"{n} {statistics.median(v):.2f} s" for n, v in top),
        )
        figure(
            f"one-minute refresh, {days} days of history: push of the newest rows",
            statistics.median(push_s),
            "s",
            f"median of {reps}",
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, nargs="+", default=[2, 14])
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    for days in args.days:
        one_history(days, args.reps)


if __name__ == "__main__":
    main()
