"""bqx's offline stores against Feast's stock ones, on the setup of issue 5's figures.

The issue measured Feast's stock stores on one feature view of 3 features over 100k
source rows (10 pairs x 10k minutes), without a TTL: the stock `duckdb` store took
108 s for 100k entity rows, the stock `postgres` store 109 s for 10k. This script
rebuilds that setup (random features, seeded) and times, in one run:

* local: Feast's stock `duckdb` offline store and `bqx.offline_store.BqxDuckDBOfflineStore`
  over the same Parquet file;
* production: Feast's stock `postgres` offline store and
  `bqx.offline_store.BqxPostgresOfflineStore` over the same table;

at 10k and 100k entity rows (the stock stores only at sizes they finish within
``--stock-limit`` seconds; a larger size is extrapolated linearly from the last
finished one and marked so). Frames are compared value by value where both ran.

(bench_feast.py has the figures on the real feature views of ``tft_v1``, whose
30-minute TTL lets the stock store prune most rows.)

Usage: ``python benchmarks/bench_stock.py [--sizes 10000 100000] [--stock-limit 300]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import figure, scratch_pg_database  # noqa: E402

PAIRS = [f"P{i:02d}_USD" for i in range(10)]
MINUTES = 10_000
START = pd.Timestamp("2024-01-01", tz="UTC")


def source_frame() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    times = START + pd.to_timedelta(np.arange(MINUTES), unit="min")
    n = len(PAIRS) * MINUTES
    return pd.DataFrame(
        {
            "pair": np.repeat(PAIRS, MINUTES),
            "event_timestamp": np.tile(times, len(PAIRS)),
            "f1": rng.normal(size=n),
            "f2": rng.normal(size=n),
            "f3": rng.normal(size=n),
        }
    )


def entity_frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    seconds = rng.integers(0, MINUTES * 60 + 600, size=n)
    return pd.DataFrame(
        {
            "pair": rng.choice(PAIRS, size=n),
            "event_timestamp": START + pd.to_timedelta(seconds, unit="s"),
        }
    )


def stores(tmp: Path, source, offline: dict[str, dict]):
    """(name -> FeatureStore) sharing one registry with the view applied."""
    from feast import Entity, FeatureStore, FeatureView, Field, RepoConfig
    from feast.types import Float64

    pair = Entity(name="pair", join_keys=["pair"])
    view = FeatureView(
        name="fv",
        entities=[pair],
        ttl=timedelta(0),  # no TTL, as in the measurement
        schema=[Field(name=f, dtype=Float64) for f in ("f1", "f2", "f3")],
        source=source,
    )
    out = {}
    for name, config in offline.items():
        out[name] = FeatureStore(
            config=RepoConfig(
                project="bench_stock",
                provider="local",
                registry=str(tmp / "registry.db"),
                offline_store=config,
                online_store={"type": "sqlite", "path": str(tmp / "online.db")},
                entity_key_serialization_version=3,
                repo_path=str(tmp),
            )
        )
    next(iter(out.values())).apply([pair, view])
    return out


def timed_frame(fs, entity: pd.DataFrame, features: list[str]):
    """(frame, seconds) of one get_historical_features call."""
    t0 = time.perf_counter()
    frame = fs.get_historical_features(entity_df=entity, features=features).to_df()
    return frame, time.perf_counter() - t0


def compare(
    label: str, fs_by_name: dict, sizes: list[int], stock_limit: float
) -> None:
    features = ["fv:f1", "fv:f2", "fv:f3"]
    ours_name, stock_name = "bqx", "stock"
    stock_done: tuple[int, float] | None = None
    for n in sizes:
        entity = entity_frame(n, seed=n)
        ours, ours_s = timed_frame(fs_by_name[ours_name], entity, features)
        figure(f"{label} bqx {n:,} entity rows", ours_s, "s")
        if stock_done is not None and stock_done[1] * n / stock_done[0] > stock_limit:
            est = stock_done[1] * n / stock_done[0]
            figure(
                f"{label} stock {n:,} entity rows (extrapolated)",
                est,
                "s",
                f"linear from {stock_done[0]:,} rows (over --stock-limit); "
                f"bqx {est / ours_s:.0f}x faster",
            )
            continue
        stock, stock_s = timed_frame(fs_by_name[stock_name], entity, features)
        stock_done = (n, stock_s)
        key = ["pair", "event_timestamp"]
        a = ours.sort_values(key, ignore_index=True)[key + ["f1", "f2", "f3"]]
        b = stock.sort_values(key, ignore_index=True)[key + ["f1", "f2", "f3"]]
        a["event_timestamp"] = pd.to_datetime(a["event_timestamp"], utc=True)
        b["event_timestamp"] = pd.to_datetime(b["event_timestamp"], utc=True)
        pd.testing.assert_frame_equal(a, b, check_dtype=False)
        figure(
            f"{label} stock {n:,} entity rows",
            stock_s,
            "s",
            f"same frame as bqx; bqx {stock_s / ours_s:.0f}x faster",
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--stock-limit", type=float, default=300.0)
    parser.add_argument("--parts", nargs="+", default=["local", "production"])
    args = parser.parse_args()
    frame = source_frame()
    print(f"# {len(frame):,} source rows ({len(PAIRS)} pairs x {MINUTES:,} minutes), 3 features, no TTL")

    if "local" in args.parts:
        from feast import FileSource

        with tempfile.TemporaryDirectory(prefix="bench_stock_") as tmp:
            path = Path(tmp) / "fv.parquet"
            frame.to_parquet(path, index=False)
            source = FileSource(
                name="fv_source", path=str(path), timestamp_field="event_timestamp"
            )
            fs = stores(
                Path(tmp),
                source,
                {
                    "bqx": {"type": "bqx.offline_store.BqxDuckDBOfflineStore"},
                    "stock": {"type": "duckdb"},
                },
            )
            compare("local (DuckDB)", fs, args.sizes, args.stock_limit)

    if "production" in args.parts:
        import psycopg
        from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import (  # noqa: E501
            PostgreSQLSource,
        )

        with scratch_pg_database() as db, tempfile.TemporaryDirectory() as tmp:
            with psycopg.connect(f"host=127.0.0.1 user=postgres dbname={db}") as conn:
                conn.execute(
                    "create table fv_source (pair text, event_timestamp timestamptz, "
                    "f1 double precision, f2 double precision, f3 double precision)"
                )
                with conn.cursor().copy(
                    "copy fv_source from stdin"
                ) as copy:
                    for row in frame.itertuples(index=False):
                        copy.write_row(row)
                conn.execute(
                    "create unique index on fv_source (pair, event_timestamp)"
                )
                conn.execute("analyze fv_source")
            pg = {
                "host": "127.0.0.1", "port": 5432, "database": db,
                "db_schema": "public", "user": "postgres", "password": "",
                "sslmode": "disable",
            }  # fmt: skip
            source = PostgreSQLSource(
                name="fv_source", table="fv_source", timestamp_field="event_timestamp"
            )
            fs = stores(
                Path(tmp),
                source,
                {
                    "bqx": {"type": "bqx.offline_store.BqxPostgresOfflineStore", **pg},
                    "stock": {"type": "postgres", **pg},
                },
            )
            compare("production (PostgreSQL)", fs, args.sizes, args.stock_limit)


if __name__ == "__main__":
    main()
