"""Build-time benchmark of the dbt marts; prints the figures of issue 4.

Simulated M1 bars of the 28 majors are loaded into a fresh warehouse and every
model is built with the committed dbt project (``dbt run``, a child process):

* full DuckDB build at 1, 2 and 4 weeks, and the scaling exponent b of
  time ~ rows^b (least squares in log-log), extrapolated to 5 years;
* the incremental refresh after one more trading day, as a share of the full
  build: a cold ``dbt run`` and, after each of three more days, the warm
  in-process run of ``bqx features follow`` (:class:`bqx.features.WarmDbt`,
  started, with its first refresh at start, before the days land);
* peak resident memory of the dbt process (DuckDB) and its memory limit;
* the same full build on PostgreSQL (``--postgres``) and its ratio to DuckDB;
* the time of the test reference (tests/dbt/reference.py) on the same bars.

Usage: ``python benchmarks/bench_dbt.py [--weeks 1 2 4] [--postgres] [--no-reference]
[--command run|build]`` (``build``: the models and their data tests, as ``bqx features
build`` runs them; a refresh tests only the refreshed tail).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bqx.pairs import UNIVERSE_28
from bqx.settings import Settings
from bqx.warehouse import open_warehouse
from ingestion.simulator import simulate_bars

PROJECT = ROOT / "dbt_project"
DBT = Path(sys.executable).with_name("dbt")
START = pd.Timestamp("2024-01-01", tz="UTC")  # a Monday


COMMAND = "run"  # or "build" (--command)


def phases(log: Path, started: float, ended: float) -> str:
    """Where the wall time of the last dbt invocation went, from its log.

    Python start and imports (until dbt logs its version), project parse (until
    it lists the nodes), the models, and the exit (closing the warehouse: for
    DuckDB, the checkpoint that writes what is still in its WAL).
    """
    import datetime as dt
    import re

    marks: dict[str, float] = {}
    day = dt.datetime.fromtimestamp(started).date()
    for line in log.read_text(errors="replace").splitlines():
        m = re.search(r"(\d\d:\d\d:\d\d\.\d{6}) \[", line[:40])
        if not m:
            continue
        t = dt.datetime.combine(day, dt.time.fromisoformat(m.group(1))).timestamp()
        if "Running with dbt=" in line:
            marks = {"start": t}
        elif line.find("Found ") > 0 and "start" in marks:
            marks["parsed"] = t
        elif "Command `dbt" in line and "start" in marks:
            marks["done"] = t
    if len(marks) < 3:
        return "phases: not in the log"
    return (
        f"imports {marks['start'] - started:.1f} s, parse {marks['parsed'] - marks['start']:.1f} s, "
        f"models {marks['done'] - marks['parsed']:.1f} s, exit {ended - marks['done']:.1f} s"
    )


def dbt_run(settings: Settings, *extra: str) -> tuple[float, float, int]:
    """``dbt run`` on the settings' warehouse: (wall s, model s, peak RSS bytes)."""
    target = settings.data_dir / "dbt_target"
    cmd = [
        str(DBT), COMMAND, "--project-dir", str(PROJECT), "--profiles-dir", str(PROJECT),
        "--target", settings.warehouse, "--target-path", str(target),
        "--log-path", str(settings.data_dir / "dbt_logs"),
        "--vars", json.dumps({"pairs": list(UNIVERSE_28)}), *extra,
    ]  # fmt: skip
    env = {**os.environ, **settings.as_env()}
    started = time.time()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    out, _ = proc.communicate()
    wall = time.perf_counter() - t0
    ended = time.time()
    if proc.returncode != 0:
        sys.exit(f"dbt {COMMAND} failed:\n{out.decode()[-4000:]}")
    results = json.loads((target / "run_results.json").read_text())["results"]
    results = [r for r in results if r["unique_id"].startswith("model.")]
    model_s = sum(r["execution_time"] for r in results)
    slowest = sorted(results, key=lambda r: -r["execution_time"])[:4]
    print(
        "    slowest models: "
        + ", ".join(
            f"{r['unique_id'].split('.')[-1]} {r['execution_time']:.1f} s"
            for r in slowest
        )
    )
    print("    " + phases(settings.data_dir / "dbt_logs" / "dbt.log", started, ended))
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return wall, model_s, peak


def fresh_settings(kind: str, root: Path, pg_db: str | None = None) -> Settings:
    overrides = {
        "data_dir": root / f"{kind}_{uuid.uuid4().hex[:6]}",
        "deployment": "local",
    }
    if kind == "postgres":
        overrides.update(warehouse="postgres", pg_database=pg_db)
    settings = Settings(_env_file=None, **overrides)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.marts_dir.mkdir(parents=True, exist_ok=True)
    return settings


def load(settings: Settings, bars: pd.DataFrame) -> None:
    warehouse = open_warehouse(settings)
    try:
        warehouse.ensure_schema()
        warehouse.upsert_candles(bars, source="sim")
    finally:
        warehouse.close()


def pg_database(name: str, drop: bool = False) -> None:
    import psycopg

    with psycopg.connect(
        "host=127.0.0.1 user=postgres dbname=postgres", autocommit=True
    ) as c:
        c.execute(f'drop database if exists "{name}" with (force)')
        if not drop:
            c.execute(f'create database "{name}"')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weeks", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument(
        "--postgres", action="store_true", help="also build on PostgreSQL"
    )
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument(
        "--command",
        choices=["run", "build"],
        default="run",
        help="dbt command timed (build = models and data tests)",
    )
    args = parser.parse_args()
    global COMMAND
    COMMAND = args.command

    print(
        f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
        f"timing `dbt {COMMAND}`"
    )
    weeks = sorted(args.weeks)
    pairs = list(UNIVERSE_28)
    rows, times = [], []
    with tempfile.TemporaryDirectory(prefix="bench_dbt_") as tmp:
        root = Path(tmp)
        last = None
        for w in weeks:
            end = START + pd.Timedelta(weeks=w)
            bars = simulate_bars(pairs, START, end)
            settings = fresh_settings("duckdb", root)
            load(settings, bars)
            wall, model_s, peak = dbt_run(settings)
            rows.append(len(bars))
            times.append(wall)
            print(
                f"duckdb full build, {w} week(s), {len(bars):,} bars: {wall:.1f} s wall "
                f"({model_s:.1f} s in models), peak RSS so far {peak / 2**30:.2f} GiB "
                f"(memory_limit {settings.duckdb_memory_limit}, threads {settings.duckdb_threads})"
            )
            last = (w, end, bars, settings, wall)

        if len(rows) >= 2:
            lx = [math.log(r) for r in rows]
            ly = [math.log(t) for t in times]
            mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
            b = sum((x - mx) * (y - my) for x, y in zip(lx, ly)) / sum(
                (x - mx) ** 2 for x in lx
            )
            five_years = times[-1] * (260 / weeks[-1]) ** b
            print(f"scaling exponent (time ~ rows^b): b = {b:.2f}")
            print(
                f"extrapolated 5-year 28-pair full build on DuckDB: {five_years / 60:.1f} min"
            )

        w, end, bars, settings, full_wall = last
        day = simulate_bars(pairs, end, end + pd.Timedelta(days=1))
        load(settings, day)
        inc_wall, inc_model, _ = dbt_run(settings)
        print(
            f"incremental refresh after one more trading day ({len(day):,} bars): "
            f"{inc_wall:.1f} s wall ({inc_model:.1f} s in models) = "
            f"{100 * inc_wall / full_wall:.1f}% of the full build"
        )

        # the same refreshes as `bqx features follow` runs them: dbt loaded, the
        # project parsed and its views created when the process starts
        # (bqx.features.WarmDbt), then its first refresh at once (the catch-up
        # of what landed while no follower ran: nothing here), then one per
        # landing of bars; the warehouse file released (checkpointed) after
        # each run
        from bqx.features import WarmDbt

        t0 = time.perf_counter()
        warm = WarmDbt(settings)
        t1 = time.perf_counter()
        warm.run()
        print(
            f"start of the follower, once per process: dbt's imports, parse and the "
            f"views {t1 - t0:.1f} s, its first refresh (a catch-up, no new bars) "
            f"{time.perf_counter() - t1:.1f} s"
        )
        # Tuesday to Thursday (a Friday is shorter)
        for k in (1, 2, 3):
            start = end + pd.Timedelta(days=k)
            more = simulate_bars(pairs, start, start + pd.Timedelta(days=1))
            load(settings, more)
            t0 = time.perf_counter()
            nodes = warm.run()
            warm_wall = time.perf_counter() - t0
            print(
                f"warm incremental refresh {k} after another trading day "
                f"({len(more):,} bars; dbt kept loaded as by `bqx features follow`): "
                f"{warm_wall:.1f} s wall ({sum(nodes.values()):.1f} s in models) = "
                f"{100 * warm_wall / full_wall:.1f}% of the full build"
            )

        if args.postgres:
            name = f"bqx_bench_dbt_{uuid.uuid4().hex[:8]}"
            pg_database(name)
            try:
                pg = fresh_settings("postgres", root, name)
                load(pg, bars)
                pg_wall, pg_model, _ = dbt_run(pg)
                print(
                    f"postgres full build, {w} week(s): {pg_wall:.1f} s wall "
                    f"({pg_model:.1f} s in models) = {pg_wall / full_wall:.1f}x DuckDB"
                )
            finally:
                pg_database(name, drop=True)

        if not args.no_reference:
            sys.path.insert(0, str(ROOT / "tests" / "dbt"))
            import reference

            t0 = time.perf_counter()
            reference.compute_all(bars)
            print(
                f"test reference (numpy/pandas), same columns, {w} week(s): "
                f"{time.perf_counter() - t0:.1f} s"
            )


if __name__ == "__main__":
    main()
