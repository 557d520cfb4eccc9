"""One-minute refresh on PostgreSQL at two history lengths (issues 4 and 5).

For each history (default 2 and 14 days of the 28 majors, simulated), a fresh
PostgreSQL database is loaded and fully built; then, as ``bqx features follow``
does, dbt runs in this process from a project parsed once
(:class:`bqx.features.FeatureRefresher`): one new minute of bars is stored and
a refresh is timed, ``--reps`` times: the incremental ``dbt run`` of the marts
served online plus the push of their newest rows (the bar is then online), and
the other models run after the push. A refresh that reads only its tail costs
the same whatever the history; one that scans it grows with it.

Usage: ``python benchmarks/bench_refresh.py [--days 2 14] [--reps 9]``
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
        online_s, push_s, other_s, slowest = [], [], [], {}
        for k in range(1, reps + 1):
            new = simulate_bars(PAIRS, last, last + pd.Timedelta(minutes=k + 1), seed=9)
            new = new[new["bar_start"] == last + pd.Timedelta(minutes=k)]
            with open_warehouse(settings) as wh:
                wh.upsert_candles(new, source="simulator:M")
            assert refresher.new_bars()
            refresher.refresh()
            took = refresher.timings
            online_s.append(took["online"])
            push_s.append(took["push"])
            other_s.append(took["other_models"])
            for name, seconds in took["nodes"].items():
                slowest.setdefault(name, []).append(seconds)
        top = sorted(slowest.items(), key=lambda kv: -statistics.median(kv[1]))[:3]
        figure(
            f"one-minute refresh, {days} days of history: bar stored -> online (warm)",
            statistics.median(online_s),
            "s",
            f"median of {reps}; {len(bars):,} bars; online marts' incremental dbt run "
            f"and the push of their newest rows ({statistics.median(push_s):.3f} s); "
            "slowest models "
            + ", ".join(f"{n} {statistics.median(v):.2f} s" for n, v in top),
        )
        figure(
            f"one-minute refresh, {days} days of history: the other models after the push",
            statistics.median(other_s),
            "s",
            f"median of {reps} (labels_forward)",
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, nargs="+", default=[2, 14])
    parser.add_argument("--reps", type=int, default=9)
    args = parser.parse_args()
    for days in args.days:
        one_history(days, args.reps)


if __name__ == "__main__":
    main()
