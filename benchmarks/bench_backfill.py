"""Benchmark: backfill 28 pairs x 1 month of M1 bars from the OANDA fake.

Runs the fake in its own process (so its CPU does not count as ours), then for
PostgreSQL and DuckDB:

1. end to end: ``ingestion.backfill.backfill`` from an empty warehouse; prints
   bars/s and the time split (HTTP wait summed over workers, parsing, loading);
2. our side only: the same pages fetched first (no HTTP in the timed part), then
   with the backfill's own code: JSON decoding alone (oandapyV20's ``json.loads``,
   which the end-to-end split counts as HTTP), parsing alone, loading alone
   (pre-parsed pages in batches of ``BATCH_ROWS``, ``load_pages``), parse then load
   one after the other, and parse and load overlapped as in the backfill (a parser
   thread feeding the writer): the bars/s our code sustains.

Usage: ``python benchmarks/bench_backfill.py [--days 31] [--pairs all]``.
PostgreSQL: a scratch database ``bqx_bench_<pid>`` on BQX_PG_HOST, dropped after.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
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
from ingestion.backfill import BATCH_ROWS, backfill
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


def _batches(pages: list) -> list[list]:
    out, batch, rows = [], [], 0
    for page in pages:
        batch.append(page)
        rows += page.rows.num_rows
        if rows >= BATCH_ROWS:
            out.append(batch)
            batch, rows = [], 0
    return out + ([batch] if batch else [])


class CpuClock:
    """CPU seconds of this process plus the PostgreSQL backends of ``db``.

    On a shared machine wall-clock rates swing with the other load; CPU seconds
    per bar do not, so each "our side" figure comes with bars per CPU second.
    """

    def __init__(self, admin, db: str) -> None:
        self.admin, self.db = admin, db

    def _server(self) -> dict[int, float]:
        rows = self.admin.execute(
            "select pid from pg_stat_activity where datname = %s", [self.db]
        ).fetchall()
        tick = os.sysconf("SC_CLK_TCK")
        out = {}
        for (pid,) in rows:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            out[pid] = (int(fields[11]) + int(fields[12])) / tick
        return out

    def start(self) -> None:
        self.t0, self.s0 = time.process_time(), self._server()

    def stop(self) -> tuple[float, float]:
        """(our process CPU s, server CPU s) since :meth:`start`."""
        ours = time.process_time() - self.t0
        server = sum(v - self.s0.get(pid, 0.0) for pid, v in self._server().items())
        return ours, server


def _cpu_note(n: int, cpu: tuple[float, float]) -> str:
    ours, server = cpu
    text = f"{n / ours:,.0f} bars per CPU s of our process"
    if server:
        text += f", {n / (ours + server):,.0f} incl. the PostgreSQL backend"
    return text


def _fresh(settings: Settings, admin, db: str) -> None:
    close_pools()
    if settings.warehouse == "postgres":
        admin.execute(f'drop database if exists "{db}" with (force)')
        admin.execute(f'create database "{db}"')
    elif settings.duckdb_path and settings.duckdb_path.exists():
        settings.duckdb_path.unlink()
    with open_warehouse(settings) as wh:
        wh.ensure_schema()


def our_side(settings: Settings, bodies: list, admin, db: str) -> None:
    kind = settings.warehouse
    cpu = CpuClock(admin, db)
    raw = [json.dumps(b).encode() for _, b in bodies]
    cpu.start()
    t0 = time.perf_counter()
    for text in raw:
        json.loads(text.decode("utf-8"))
    t_json = time.perf_counter() - t0
    c_json = cpu.stop()
    cpu.start()
    t0 = time.perf_counter()
    pages = [parse_candles(b, p, "M", "oanda:M") for p, b in bodies]
    t_parse = time.perf_counter() - t0
    c_parse = cpu.stop()
    n = sum(p.rows.num_rows for p in pages)
    figure(f"backfill {kind} our side: JSON decode", n / t_json, "bars/s",
           "json.loads inside oandapyV20 (counted as HTTP end to end); "
           + _cpu_note(n, c_json))  # fmt: skip
    figure(f"backfill {kind} our side: parse", n / t_parse, "bars/s",
           "validate + build Arrow rows; " + _cpu_note(n, c_parse))  # fmt: skip

    _fresh(settings, admin, db)
    with open_warehouse(settings) as wh:
        cpu.start()
        t0 = time.perf_counter()
        for batch in _batches(pages):
            load_pages(wh, batch, "oanda:M")
        t_load = time.perf_counter() - t0
        c_load = cpu.stop()
    figure(f"backfill {kind} our side: load", n / t_load, "bars/s",
           f"load_pages, batches of {BATCH_ROWS:,} rows, empty warehouse; "
           + _cpu_note(n, c_load))  # fmt: skip
    both = (c_parse[0] + c_load[0], c_parse[1] + c_load[1])
    figure(f"backfill {kind} our side: parse + load", n / (t_parse + t_load),
           "bars/s", f"{n:,} bars already fetched, one after the other; "
           + _cpu_note(n, both))  # fmt: skip

    _fresh(settings, admin, db)
    with open_warehouse(settings) as wh:
        q: queue.Queue = queue.Queue(maxsize=16)

        def parser() -> None:
            for p, b in bodies:
                q.put(parse_candles(b, p, "M", "oanda:M"))
            q.put(None)

        cpu.start()
        t0 = time.perf_counter()
        threading.Thread(target=parser, daemon=True).start()
        batch: list = []
        rows, done = 0, False
        while not done:
            item = q.get()
            done = item is None
            if not done:
                batch.append(item)
                rows += item.rows.num_rows
            if batch and (done or rows >= BATCH_ROWS):
                load_pages(wh, batch, "oanda:M")
                batch, rows = [], 0
        t_pipe = time.perf_counter() - t0
        c_pipe = cpu.stop()
    figure(f"backfill {kind} our side: parse | load", n / t_pipe, "bars/s",
           "a parser thread feeding the writer, as in the backfill; "
           + _cpu_note(n, c_pipe))  # fmt: skip

    with open_warehouse(settings) as wh:
        cpu.start()
        t0 = time.perf_counter()
        again = sum(
            load_pages(wh, batch, "oanda:M")[0].unchanged for batch in _batches(pages)
        )
        t_reload = time.perf_counter() - t0
        c_reload = cpu.stop()
    assert again == n, (again, n)
    figure(f"backfill {kind} our side: reload (exact path)", n / t_reload, "bars/s",
           "the same bars again: all unchanged, nothing written; "
           + _cpu_note(n, c_reload))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=31)
    ap.add_argument("--pairs", default="all")
    ap.add_argument("--engines", default="postgres,duckdb")
    ap.add_argument("--parts", default="e2e,ours", help="e2e and/or ours")
    args = ap.parse_args()
    parts = args.parts.split(",")
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
                for label in parts:
                    close_pools()  # the warehouse keeps a pool per DSN
                    admin.execute(f'drop database if exists "{db}" with (force)')
                    admin.execute(f'create database "{db}"')
                    data_dir = Path(tmp) / label
                    s = settings_for(kind, url, data_dir, db)
                    if label == "e2e":
                        end_to_end(s, pairs, start)
                    else:
                        our_side(s, fetch_bodies(s, pairs, start), admin, db)
    finally:
        admin.execute(f'drop database if exists "{db}" with (force)')
        admin.close()
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
