"""Helpers shared by the benchmark scripts: settings in a scratch dir, figures."""

from __future__ import annotations

import resource
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from bqx.settings import Settings


def figure(name: str, value: float, unit: str, context: str = "") -> None:
    """Print one measured figure on one line."""
    text = f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
    print(f"{name}: {text} {unit}" + (f" ({context})" if context else ""), flush=True)


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextmanager
def timer():
    """``with timer() as t: ...`` then ``t()`` is the elapsed seconds."""
    start = time.perf_counter()
    end = None

    def elapsed() -> float:
        return (end or time.perf_counter()) - start

    yield elapsed
    end = time.perf_counter()


def scratch_settings(**overrides) -> Settings:
    """Settings in a fresh temporary data dir (blind to BQX_* variables)."""
    import os

    tmp = Path(tempfile.mkdtemp(prefix="bqx-bench-"))
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("BQX_")}
    try:
        return Settings(_env_file=None, data_dir=tmp, **overrides)
    finally:
        os.environ.update(saved)


@contextmanager
def scratch_pg_database():
    """A fresh PostgreSQL database for one benchmark, dropped afterwards."""
    import psycopg

    name = f"bqx_bench_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(
        "host=127.0.0.1 port=5432 user=postgres dbname=postgres", autocommit=True
    )
    admin.execute(f'create database "{name}"')
    try:
        yield name
    finally:
        admin.execute(f'drop database if exists "{name}" with (force)')
        admin.close()
