"""Benchmark: backfill 28 pairs x 1 month of M1 bars from the OANDA fake.

Runs the fake in its own process (so its CPU does not count as ours), then for
PostgreSQL and DuckDB:

1. end to end: ``ingestion.backfill.backfill`` from an empty warehouse; prints
   bars/s and the time split (HTTP wait summed over workers, parsing, loading);
2. our side only: the same pages fetched first, then parsed and loaded with the
   backfill's own code (no HTTP in the timed part): the bars/s our code sustains.

Usage: ``python benchmarks/bench_backfill.py [--days 31] [--pairs all]``.
PostgreSQL: a scratch database ``bqx_bench_<pid>`` on BQX_PG_HOST, dropped after.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import psycopg
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import figure  # noqa: E402

from bqx.pairs import UNIVERSE_28
from bqx.settings import Settings
from bqx.warehouse import close_pools, open_warehouse
from ingestion.backfill import backfill
from ingestion.oanda.client import OandaClient
from ingestion.oanda.pager import PageRequest
from ingestion.oanda.parse import parse_candles
from ingestion.oanda.ratelimit import RateLimiter
from ingestion.oanda.store import load_pages
from ingestion.oanda.timefmt import format_unix, to_ns

TOKEN = "bench-token"


def start_fake(pairs: list[str], start: str, end: str) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "BQX_OANDA_TOKEN": TOKEN}
    cmd = [sys.executable, "-m", "bqx.cli.main", "oanda-fake", "serve", "--pairs",
           ",".join(pairs), "--since", start, "--until", end]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:\d+", line)
    if not match:
        proc.kill()
        raise SystemExit(f"the fake did not start: {line!r}")
    return proc, match.group(0)


def settings_for(kind: str, url: str, data_dir: Path, db: str) -> Settings:
    return Settings(
        _env_file=None, data_dir=data_dir, warehouse=kind, pg_database=db,
        oanda_env="custom", oanda_url=url, oanda_token=SecretStr(TOKEN),
    )  # fmt: skip


def end_to_end(settings: Settings, pairs: list[str], start: str) -> None:
    kind = settings.warehouse
    t0 = time.perf_counter()
    s = backfill(settings, pairs, start, rate=100.0, workers=8)
    wall = time.perf_counter() - t0
    ours = s.parse_s + s.load_s
    figure(
        f"backfill {kind} end to end", s.bars / wall, "bars/s",
        f"{len(pairs)} pairs, {s.bars:,} bars in {wall:.1f} s, {s.requests} requests",
    )  # fmt: skip
    figure(
        f"backfill {kind} time in our code", 100 * ours / (ours + s.http_s), "%",
        f"parse {s.parse_s:.1f} s + load {s.load_s:.1f} s vs HTTP wait "
        f"{s.http_s:.1f} s, summed over workers",
    )  # fmt: skip
    figure(
        f"backfill {kind} writer busy", 100 * s.load_s / wall, "% of wall",
        "the single writer loading batches",
    )  # fmt: skip


def fetch_bodies(settings: Settings, pairs: list[str], start: str) -> list:
    client = OandaClient(settings, RateLimiter(1000.0))
    bodies = []
    for pair in pairs:
        req = PageRequest(pair, to_ns(start))
        cursor, first = req.start_ns, True
        while True:
            params = {"granularity": "M1", "price": "M", "count": "5000",
                      "from": format_unix(cursor)}  # fmt: skip
            if not first:
                params["includeFirst"] = "false"
            body = client.candles(pair, params, pair)
            bodies.append((pair, body))
            page = parse_candles(body, pair, "M", "oanda:M")
            if page.last_ns is None or page.received < 5000:
                break
            cursor, first = page.last_ns, False
    client.close()
    return bodies


def our_side(settings: Settings, bodies: list) -> None:
    t0 = time.perf_counter()
    pages = [parse_candles(b, p, "M", "oanda:M") for p, b in bodies]
    t1 = time.perf_counter()
    n = 0
    with open_warehouse(settings) as wh:
        wh.ensure_schema()
        batch: list = []
        for page in pages:
            batch.append(page)
            if sum(len(p.rows) for p in batch) >= 50_000:
                n += load_pages(wh, batch, "oanda:M")[0].total
                batch = []
        if batch:
            n += load_pages(wh, batch, "oanda:M")[0].total
    t2 = time.perf_counter()
    kind = settings.warehouse
    figure(f"backfill {kind} our side: parse", n / (t1 - t0), "bars/s", "no HTTP")
    figure(f"backfill {kind} our side: load", n / (t2 - t1), "bars/s", "bulk upsert")
    figure(
        f"backfill {kind} our side: parse + load", n / (t2 - t0), "bars/s",
        f"{n:,} bars already fetched",
    )  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=31)
    ap.add_argument("--pairs", default="all")
    ap.add_argument("--engines", default="postgres,duckdb")
    args = ap.parse_args()
    pairs = list(UNIVERSE_28) if args.pairs == "all" else args.pairs.split(",")
    start = "2024-01-01"
    end = str((pd.Timestamp(start) + pd.Timedelta(days=args.days)).date())
    proc, url = start_fake(pairs, start, end)
    db = f"bqx_bench_{os.getpid()}"
    admin = psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres",
                            autocommit=True)  # fmt: skip
    try:
        for kind in args.engines.split(","):
            with tempfile.TemporaryDirectory() as tmp:
                for label in ("e2e", "ours"):
                    close_pools()  # the warehouse keeps a pool per DSN
                    admin.execute(f'drop database if exists "{db}" with (force)')
                    admin.execute(f'create database "{db}"')
                    data_dir = Path(tmp) / label
                    s = settings_for(kind, url, data_dir, db)
                    if label == "e2e":
                        end_to_end(s, pairs, start)
                    else:
                        our_side(s, fetch_bodies(s, pairs, start))
    finally:
        admin.execute(f'drop database if exists "{db}" with (force)')
        admin.close()
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
