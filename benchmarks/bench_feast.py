"""Feast figures: point-in-time joins (ours vs the raw DuckDB ASOF reference vs the
stock Feast store), online read latency (SDK and HTTP), push-path freshness.

Sizes can be trimmed with BENCH_FEAST_DAYS (default 10 calendar days of 28 pairs).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import (  # noqa: E402
    figure,
    peak_rss_mib,
    scratch_pg_database,
    scratch_settings,
    timer,
)

from bqx import features  # noqa: E402
from bqx.pairs import UNIVERSE_28  # noqa: E402
from bqx.warehouse import open_warehouse  # noqa: E402
from ingestion.simulator import simulate_bars  # noqa: E402
from tests.conftest import free_port  # noqa: E402

DAYS = int(os.environ.get("BENCH_FEAST_DAYS", "10"))
#: which parts to run: pit, stock, production, online, freshness (default: all)
PARTS = set(
    os.environ.get("BENCH_FEAST_PARTS", "pit,stock,production,online,freshness").split(
        ","
    )
)
SIZES = [
    int(s)
    for s in os.environ.get("BENCH_FEAST_SIZES", "100000,1000000,10000000").split(",")
]
PAIRS = list(UNIVERSE_28)


def entities(mart: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    lo, hi = mart["event_timestamp"].min(), mart["event_timestamp"].max()
    secs = rng.integers(0, int((hi - lo).total_seconds()), n)
    return pd.DataFrame(
        {
            "pair": np.array(PAIRS)[rng.integers(0, len(PAIRS), n)],
            "event_timestamp": lo + pd.to_timedelta(secs, unit="s"),
        }
    )


def reference_asof(
    settings, entity: pd.DataFrame, views: dict[str, list[str]]
) -> float:
    """The raw DuckDB ASOF JOIN of the same columns over the same Parquet files."""
    import duckdb

    con = duckdb.connect(config={"threads": settings.duckdb_threads})
    con.register("e", entity)
    sel, joins = [], []
    for i, (mart, cols) in enumerate(views.items()):
        path = settings.marts_dir / mart / "*.parquet"
        joins.append(
            f"asof left join read_parquet('{path}') v{i} "
            f"on e.pair = v{i}.pair and e.event_timestamp >= v{i}.event_timestamp"
        )
        sel += [f"v{i}.{c}" for c in cols]
    sql = f"select e.pair, e.event_timestamp, {', '.join(sel)} from e {' '.join(joins)}"
    with timer() as t:
        con.sql(sql).to_arrow_table()
    con.close()
    return t()


def service_views(fs, service: str) -> tuple[list[str], dict[str, list[str]]]:
    svc = fs.get_feature_service(service)
    refs, views = [], {}
    for proj in svc.feature_view_projections:
        mart = fs.get_feature_view(proj.name).tags["mart"]
        views[mart] = [f.name for f in proj.features]
        refs += [f"{proj.name}:{f.name}" for f in proj.features]
    return refs, views


def latency(fn, n: int) -> tuple[float, float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 99) * 1e3)


def main() -> None:
    end = pd.Timestamp("2024-01-19", tz="UTC")
    bars = simulate_bars(PAIRS, end - pd.Timedelta(days=DAYS), end, seed=2)
    local = scratch_settings(pairs=",".join(PAIRS))
    with open_warehouse(local) as wh:
        wh.ensure_schema()
        wh.upsert_candles(bars, source="simulator:M")
    features.build(local)
    features.publish(local)
    fs = features.store(local)
    mart = pd.read_parquet(
        local.marts_dir / "features_bqx", columns=["event_timestamp"]
    )
    refs, views = service_views(fs, "tft_v1")
    small_refs = [r for r in refs if r.startswith("bqx:")]
    print(f"# {len(bars):,} bars, tft_v1 = {len(refs)} features in {len(views)} views")

    ours_100k = None
    for n in SIZES if "pit" in PARTS else ():
        entity = entities(mart, n)
        use_refs, use_views = (
            (refs, views)
            if n <= 1_000_000
            else (small_refs, {"features_bqx": [r.split(":")[1] for r in small_refs]})
        )
        ref_s = reference_asof(local, entity, use_views)
        with timer() as t:
            fs.get_historical_features(entity_df=entity, features=use_refs).to_arrow()
        what = "tft_v1" if n <= 1_000_000 else "bqx view only (tft_v1 x 10M ~ 15 GB)"
        figure(
            f"pit local {n:,} rows",
            t(),
            "s",
            f"{what}; reference ASOF {ref_s:.2f} s, ratio {t() / ref_s:.2f}x",
        )
        if n == 100_000:
            ours_100k = t()
        figure(f"pit local peak rss after {n:,}", peak_rss_mib(), "MiB")

    # the stock Feast DuckDB store, at a size it finishes
    from feast import FeatureStore, RepoConfig

    cfg = (
        fs.config.model_dump() if hasattr(fs.config, "model_dump") else fs.config.dict()
    )
    stock_cfg = RepoConfig(
        project=fs.config.project, provider="local", registry=fs.config.registry,
        offline_store={"type": "duckdb"}, online_store=fs.config.online_store,
        entity_key_serialization_version=3, repo_path=fs.config.repo_path,
    )  # fmt: skip
    stock = FeatureStore(config=stock_cfg)
    for n in (1_000, 10_000, 100_000) if "stock" in PARTS else ():
        entity = entities(mart, n, seed=5)
        with timer() as t:
            stock.get_historical_features(entity_df=entity, features=refs).to_df()
        per_100k = t() * 100_000 / n
        figure(
            f"pit stock duckdb {n:,} rows", t(), "s",
            f"~{per_100k:.0f} s per 100k rows"
            + (f"; ours at 100k is {per_100k / ours_100k:.0f}x faster" if ours_100k else ""),
        )  # fmt: skip
        if t() > 60:
            break
    del cfg

    if not PARTS & {"production", "online", "freshness"}:
        return
    # production: Postgres offline (sort-merge), Redis online
    with scratch_pg_database() as db:
        prod = scratch_settings(
            deployment="production", pg_database=db, redis_db=14, pairs=",".join(PAIRS)
        )
        import redis

        redis.Redis(port=6379, db=14).flushdb()
        with open_warehouse(prod) as wh:
            wh.ensure_schema()
            wh.upsert_candles(bars, source="simulator:M")
        with timer() as t:
            features.build(prod)
        figure("postgres full build (all marts)", t(), "s", f"{len(bars):,} bars")
        features.publish(prod)
        pfs = features.store(prod)
        for n in [s for s in SIZES if s <= 1_000_000] if "production" in PARTS else ():
            entity = entities(mart, n)
            with timer() as t:
                pfs.get_historical_features(entity_df=entity, features=refs).to_arrow()
            figure(
                f"pit production {n:,} rows", t(), "s", "tft_v1, sort-merge per view"
            )

        if "online" in PARTS:
            online_latency(fs, pfs, prod)
        if "freshness" in PARTS:
            freshness(pfs, prod, bars)


def online_latency(fs, pfs, prod) -> None:
    """p50/p99 of one read of online_v1 for all pairs: SDK (bqx Redis store,
    Feast's stock Redis read, SQLite) and HTTP (`bqx serve`) at 100 requests/s."""
    rows = [{"pair": p} for p in PAIRS]
    # what an app does: one call for every pair, values as Python objects;
    # Feast's stock Redis read of the same keys is the reference
    from feast.infra.online_stores.redis import RedisOnlineStore

    redis_store = pfs._get_provider().online_store
    readers = {
        "redis (bqx store)": lambda svc: pfs.get_online_features(
            features=svc, entity_rows=rows
        ).to_dict(),
        "redis (Feast's stock read, same keys)": lambda svc: (
            RedisOnlineStore.get_online_features(
                redis_store, pfs.config, svc, rows, pfs.registry, pfs.project
            ).to_dict()
        ),
        "sqlite (Feast's store)": lambda svc: fs.get_online_features(
            features=svc, entity_rows=rows
        ).to_dict(),
    }
    for name, read in readers.items():
        svc = (fs if name.startswith("sqlite") else pfs).get_feature_service(
            "online_v1"
        )
        read(svc)
        p50, p99 = latency(lambda: read(svc), 2000)
        figure(
            f"online sdk {name} p50",
            p50,
            "ms",
            "28 pairs x online_v1, one call + to_dict()",
        )
        figure(f"online sdk {name} p99", p99, "ms", "2,000 calls")

    port = free_port()
    env = {**os.environ, **prod.as_env()}
    server = subprocess.Popen(
        [sys.executable, "-m", "bqx.cli.main", "serve", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    body = json.dumps(
        {"feature_service": "online_v1", "entities": {"pair": PAIRS}}
    ).encode()

    def call() -> None:
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/get-online-features", data=body,
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        urllib.request.urlopen(req, timeout=5).read()

    try:
        for _ in range(120):
            try:
                call()
                break
            except OSError:
                time.sleep(1)
        times = []
        next_at = time.perf_counter()
        for _ in range(2000):  # paced at 100 requests/s
            next_at += 0.01
            t0 = time.perf_counter()
            call()
            times.append(time.perf_counter() - t0)
            time.sleep(max(0.0, next_at - time.perf_counter()))
        figure(
            "online http p50",
            np.percentile(times, 50) * 1e3,
            "ms",
            "100 req/s, 28 pairs",
        )
        figure(
            "online http p99",
            np.percentile(times, 99) * 1e3,
            "ms",
            "2,000 requests",
        )
    finally:
        server.terminate()
        server.wait(timeout=30)


def freshness(pfs, prod, bars: pd.DataFrame) -> None:
    """p50/p99 from a bar stored in the warehouse to its features readable online.

    `bqx features follow` runs (dbt and Feast loaded; each load's notification
    wakes it, its own looks are 1 s apart); each bar is
    stored once the follower has finished its previous refresh (labels included),
    as with one bar a minute, and this process polls Feast every 10 ms for it.
    """
    import re
    import threading

    env = {**os.environ, **prod.as_env()}
    follower = subprocess.Popen(
        [sys.executable, "-m", "bqx.cli.main", "features", "follow"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    done: dict[int, float] = {}  # refresh number -> its "online in" seconds

    def drain() -> None:
        for line in follower.stdout:
            m = re.match(r"refresh (\d+):.* online in ([\d.]+) s", line)
            if m:
                done[int(m.group(1))] = float(m.group(2))

    threading.Thread(target=drain, daemon=True).start()

    def wait_for_refresh(n: int) -> None:
        deadline = time.perf_counter() + 120
        while n not in done:
            if follower.poll() is not None or time.perf_counter() > deadline:
                sys.exit(f"bqx features follow stopped before its refresh {n}")
            time.sleep(0.01)

    try:
        wait_for_refresh(1)  # caught up with what is stored
        last = bars["bar_start"].max()
        lags = []
        for k in range(1, 21):
            new = simulate_bars(PAIRS, last, last + pd.Timedelta(minutes=k + 1), seed=9)
            new = new[new["bar_start"] == last + pd.Timedelta(minutes=k)]
            with open_warehouse(prod) as wh:
                wh.upsert_candles(new, source="simulator:M")
            t0 = time.perf_counter()  # committed
            want = int((last + pd.Timedelta(minutes=k + 1)).timestamp())
            while True:
                got = pfs.get_online_features(
                    features=["bqx:bqx_45"], entity_rows=[{"pair": "EUR_USD"}]
                ).to_dict(include_event_timestamps=True)["bqx_45__ts"][0]
                if got == want:
                    break
                if time.perf_counter() - t0 > 120:
                    sys.exit(f"bar {k} not online after 120 s")
                time.sleep(0.01)
            lags.append(time.perf_counter() - t0)
            wait_for_refresh(k + 1)
            time.sleep(0.5)
    finally:
        follower.terminate()
        follower.wait(timeout=30)
    refreshes = [done[k] for k in range(2, 22)]
    for q in (50, 99):
        figure(
            f"freshness (bar -> online) p{q}",
            float(np.percentile(lags, q)),
            "s",
            f"`bqx features follow`, {len(lags)} bars; max {max(lags):.2f} s; "
            f"the follower's refresh to online p{q} {np.percentile(refreshes, q):.2f} s",
        )


if __name__ == "__main__":
    main()
