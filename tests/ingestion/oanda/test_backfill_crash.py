"""SIGKILL the backfill at random points, restart it: it ends with exactly the
fake's bars, none missing, duplicated or altered (DuckDB and PostgreSQL)."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time

from bqx import warehouse
from bqx.warehouse import open_warehouse
from ingestion.backfill import backfill

FORK = multiprocessing.get_context("fork")

PAIRS = "EUR_USD,USD_JPY,GBP_USD"
TRIALS = 12  # kill attempts; at least KILLS must land before the run ends
KILLS = 10
PAGE = 100


def _backfill(settings) -> None:
    backfill(
        settings, PAIRS.split(","), "2024-01-01", page_size=PAGE, rate=1000, workers=3
    )


def backfill_process(settings) -> multiprocessing.Process:
    """The backfill in its own (forked) process, so SIGKILL hits only it.

    The parent's PostgreSQL pool for this database is closed first: a forked child
    must not share its connections (or its pool threads' locks). Pools of other
    databases stay untouched (and unused by the child).
    """
    if settings.warehouse == "postgres":
        for key in [k for k in warehouse._POOLS if k[0] == settings.pg_dsn]:
            warehouse._POOLS.pop(key).close()
    proc = FORK.Process(target=_backfill, args=(settings,), daemon=True)
    proc.start()
    return proc


def assert_consistent(settings) -> int:
    """Bars never run ahead of their pair's watermark; returns the bar count."""
    with open_warehouse(settings) as wh:
        wh.ensure_schema()
        ahead = wh.query_df(
            "select count(*) as n from raw.candles_m1 c left join "
            "raw.ingest_watermarks w using (pair) "
            "where w.last_bar_start is null or c.bar_start > w.last_bar_start"
        )
        n = wh.query_df("select count(*) as n from raw.candles_m1")
    assert int(ahead["n"][0]) == 0
    return int(n["n"][0])


def test_sigkill_at_random_points_then_restart_is_exact(
    any_settings, fake, aim, stored_bars, expected_bars
):
    settings = aim(any_settings, fake)
    fake.latency = 0.005
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    kills, mid_run, counts = 0, 0, [0]
    total = len(fake.market.complete_bars(fake.clock.now()))
    for _ in range(TRIALS):
        proc = backfill_process(settings)
        left = (total - counts[-1]) // PAGE + 3  # requests the run still needs
        target = fake.requests + rng.randint(1, max(2, left * 2 // 3))
        deadline = time.time() + 60
        while fake.requests < target and proc.is_alive() and time.time() < deadline:
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.03))
        if proc.is_alive():
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.join(timeout=30)
        counts.append(assert_consistent(settings))
        mid_run += proc.exitcode == -signal.SIGKILL and 0 < counts[-1] < total
    proc = backfill_process(settings)
    proc.join(timeout=120)
    assert proc.exitcode == 0
    assert kills >= KILLS, (seed, kills, counts)
    assert mid_run >= KILLS // 2, (seed, counts)  # kills landed between writes
    assert stored_bars(settings) == expected_bars(fake), f"seed {seed}"
