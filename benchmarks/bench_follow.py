"""Benchmark: ``follow`` latency, from a candle completing on the fake to its row
being committed in the warehouse (p50/p99 over a run), for PostgreSQL and DuckDB.

The fake runs in this process with its clock running ``--speed`` times real time
(a fake minute completes every 60/speed s); ``follow`` polls every ``--interval``
seconds for ``--seconds`` seconds. A candle's latency is the commit time of the
poll that stored it minus the real time at which the fake's clock passed the
candle's end. The default speed (x37: a minute every 1.62 s) makes completions
fall at every phase of the poll cycle.

Two modes: ``poll`` (every ``--interval`` s) and ``stream`` (``follow --stream``:
fetch when the pricing stream announces a new minute; a full poll only after
``--fallback`` s without one). Requests per candle are printed too.
Usage: ``python benchmarks/bench_follow.py [--pairs all] [--seconds 60]
[--modes poll,stream]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psycopg
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import figure  # noqa: E402

from bqx.pairs import UNIVERSE_28
from bqx.settings import Settings
from bqx.warehouse import close_pools
from ingestion.follow import follow
from ingestion.oanda.fake import FakeOanda
from ingestion.oanda.market import FakeMarket
from ingestion.oanda.timefmt import to_ns


def run(kind: str, fake: FakeOanda, pairs, args, db: str, tmp: Path, mode: str) -> None:
    settings = Settings(
        _env_file=None, data_dir=tmp / kind, warehouse=kind, pg_database=db,
        oanda_env="custom", oanda_url=fake.url, oanda_token=SecretStr(fake.token),
        oanda_account=fake.account,
    )  # fmt: skip
    start = to_ns("2024-01-10 12:00") / 1e9
    fake.clock.set(start, speed=args.speed)
    began = time.time()
    latencies: list[float] = []

    def on_poll(result) -> None:
        for times in result.new_bars.values():
            for t in times:
                done = fake.clock.wall_time_of(t.value / 1e9 + 60)
                if done >= began:  # completed while following (not the lookback)
                    latencies.append(result.committed_at - done)

    stop = threading.Event()
    threading.Timer(args.seconds, stop.set).start()
    stream = mode == "stream"
    requests = fake.requests
    stats = follow(
        settings, pairs, interval=args.fallback if stream else args.interval,
        lookback=60, stop=stop, on_poll=on_poll, stream=stream,
    )  # fmt: skip
    requests = fake.requests - requests
    lat = np.array(latencies)
    name = f"follow {kind} {mode}"
    if not len(lat):
        print(f"{name}: no samples")
        return
    how = (
        f"stream-cued, fallback poll after {args.fallback} s"
        if stream
        else f"every {args.interval} s"
    )
    context = (
        f"{len(lat)} candles of {len(pairs)} pairs, {stats.polls} polls {how}, "
        f"{requests} requests, fake clock x{args.speed}"
    )
    figure(f"{name} latency p50", float(np.percentile(lat, 50)), "s", context)
    figure(f"{name} latency p99", float(np.percentile(lat, 99)), "s", context)
    figure(f"{name} latency max", float(lat.max()), "s", context)
    figure(f"{name} requests per candle", requests / len(lat), "", context)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", default="all")
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--speed", type=float, default=37.0)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--engines", default="postgres,duckdb")
    ap.add_argument("--modes", default="poll,stream")
    ap.add_argument("--fallback", type=float, default=30.0)
    args = ap.parse_args()
    pairs = list(UNIVERSE_28) if args.pairs == "all" else args.pairs.split(",")
    market = FakeMarket.from_simulator(pairs, "2024-01-09", "2024-01-11")
    db = f"bqx_bench_follow_{int(time.time())}"
    admin = psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres",
                            autocommit=True)  # fmt: skip
    try:
        with FakeOanda(market) as fake, tempfile.TemporaryDirectory() as tmp:
            for kind in args.engines.split(","):
                for mode in args.modes.split(","):
                    close_pools()  # the warehouse keeps a pool per DSN
                    admin.execute(f'drop database if exists "{db}" with (force)')
                    admin.execute(f'create database "{db}"')
                    run(kind, fake, pairs, args, db, Path(tmp) / mode, mode)
    finally:
        admin.execute(f'drop database if exists "{db}" with (force)')
        admin.close()


if __name__ == "__main__":
    main()
