"""PostgreSQL restarted in the middle of a command: it completes after retrying or
exits 1 with a clear message, and a rerun converges to exactly the tables of an
undisturbed run. These tests restart the shared server: they run last (see
pytest_collection_modifyitems in tests/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from bqx.warehouse import open_warehouse
from ingestion.simulator import simulate_bars
from tests.conftest import flush_redis, make_settings

pytestmark = pytest.mark.restarts_postgres
PAIRS = ["EUR_USD", "USD_JPY", "EUR_JPY"]


class Restart(threading.Thread):
    """Restart the local cluster ``delay`` seconds from now, or, with ``after``,
    as soon as that text is in the ``log`` file (the command's own progress, not
    a guess from an earlier run's duration); ``at`` is when."""

    def __init__(self, delay: float = 0.0, log: Path | None = None, after: str = "") -> None:
        super().__init__()
        self.delay, self.log, self.after, self.at = delay, log, after, None
        self.start()

    def _wait_for_log(self, timeout: float = 300) -> None:
        deadline, seen, offset = time.monotonic() + timeout, "", 0
        while time.monotonic() < deadline:
            if self.log.exists():
                with self.log.open(errors="replace") as f:
                    f.seek(offset)
                    seen = seen[-len(self.after):] + f.read()
                    offset = f.tell()
                if self.after in seen:
                    return
            time.sleep(0.05)

    def run(self) -> None:
        version = sorted(os.listdir("/etc/postgresql"))[0]
        if self.log is not None:
            self._wait_for_log()
        time.sleep(self.delay)
        self.at = time.monotonic()
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip


def timed_bqx(settings, *args: str) -> tuple[subprocess.CompletedProcess, float, float]:
    start = time.monotonic()
    proc = bqx(settings, *args)
    return proc, start, time.monotonic()


def wait_for_postgres(timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while True:
        try:
            psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            assert time.time() < deadline, "PostgreSQL did not come back"
            time.sleep(0.5)


def bqx(settings, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **settings.as_env()}
    return subprocess.run(
        [sys.executable, "-m", "bqx.cli.main", *args],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip


def table_digest(settings, sql: str) -> pd.DataFrame:
    with open_warehouse(settings) as wh:
        return wh.query_df(sql)


def write_files(tmp: Path) -> list[str]:
    bars = simulate_bars(PAIRS, "2024-01-08", "2024-01-13", seed=31)
    files = []
    for pair, g in bars.groupby("pair"):
        for day, d in g.groupby(g["bar_start"].dt.date):
            path = tmp / f"{pair.replace('_', '')}_{day:%Y%m%d}.csv"
            d.assign(time=d["bar_start"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"))[
                ["time", "open", "high", "low", "close", "volume"]
            ].to_csv(path, index=False, float_format="%.5f")
            files.append(str(path))
    return files


CANDLES = (
    "select pair, count(*) as n, sum(close) as s, min(bar_start) as lo, "
    "max(bar_start) as hi from raw.candles_m1 group by pair order by pair"
)


def test_csv_load_survives_a_restart(tmp_path, pg_database_factory):
    files = write_files(tmp_path)
    calm = make_settings(tmp_path / "a", warehouse="postgres", pg_database=pg_database_factory())
    hit = make_settings(tmp_path / "b", warehouse="postgres", pg_database=pg_database_factory())
    calm_run, t0, t1 = timed_bqx(calm, "ingest", "csv", *files)
    assert calm_run.returncode == 0
    restart = Restart(delay=0.6 * (t1 - t0))
    first, start, end = timed_bqx(hit, "ingest", "csv", *files)
    restart.join()
    wait_for_postgres()
    assert start < restart.at < end, "the restart missed the load"
    assert first.returncode in (0, 1)
    if first.returncode == 1:
        assert "PostgreSQL" in first.stderr and "Traceback" not in first.stderr
    assert bqx(hit, "ingest", "csv", *files).returncode == 0
    pd.testing.assert_frame_equal(table_digest(calm, CANDLES), table_digest(hit, CANDLES))


def test_dbt_build_and_publish_converge_after_a_restart(tmp_path, pg_database_factory, redis_db):
    files = write_files(tmp_path)
    flush_redis(redis_db)
    base = dict(deployment="production", redis_db=redis_db, pairs=",".join(PAIRS))
    calm = make_settings(tmp_path / "a", pg_database=pg_database_factory(), **base)
    hit = make_settings(tmp_path / "b", pg_database=pg_database_factory(), **base)
    for s in (calm, hit):
        assert bqx(s, "ingest", "csv", *files).returncode == 0
    durations = {}
    for command in (("features", "build"), ("features", "publish")):
        run, t0, t1 = timed_bqx(calm, *command)
        assert run.returncode == 0, run.stderr[-2000:]
        durations[command] = t1 - t0
    for command in (("features", "build"), ("features", "publish")):
        if command[1] == "build":  # as the marts start (the views and int are done)
            log = hit.data_dir / "dbt_logs" / "dbt.log"
            restart = Restart(log=log, after="START sql incremental model marts.")
        else:
            restart = Restart(delay=0.6 * durations[command])
        run, start, end = timed_bqx(hit, *command)
        restart.join()
        wait_for_postgres()
        assert start < restart.at < end, f"the restart missed {command}"
        if run.returncode != 0:
            assert run.returncode == 1
            message = run.stderr.strip().splitlines()[-1]
            assert message.startswith("error:"), run.stderr[-2000:]
            assert bqx(hit, *command).returncode == 0, command
    for mart in ("features_bqx", "features_reg", "features_corr", "labels_forward"):
        sql = f"select * from marts.{mart} order by pair, event_timestamp"
        pd.testing.assert_frame_equal(table_digest(calm, sql), table_digest(hit, sql))
