"""Shared fixtures: real PostgreSQL and Redis, fresh per run; simulated bars.

A service that is down makes the tests that need it fail, never skip: CI must prove
both warehouses and both online stores.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest

from bqx.settings import Settings

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "fx_m1"
PG_HOST = "127.0.0.1"


def pytest_collection_modifyitems(config, items):
    """Tests that restart the shared PostgreSQL server run last."""
    items.sort(key=lambda item: item.get_closest_marker("restarts_postgres") is not None)


def make_settings(tmp: Path, **overrides) -> Settings:
    """Settings for a test, blind to any BQX_* variable: data lives under ``tmp``."""
    base = {"data_dir": tmp, "deployment": "local"}
    base.update(overrides)
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("BQX_")}
    try:
        return Settings(_env_file=None, **base)
    finally:
        os.environ.update(saved)


def _environment_restored():
    from bqx.settings import get_settings

    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)
    get_settings.cache_clear()


#: Commands export BQX_* variables for dbt and Feast; undo that after each test,
#: and after each module (module fixtures build and publish before any test's own
#: restore starts; pytest-xdist runs modules in any order).
_restore_environment = pytest.fixture(autouse=True)(_environment_restored)
_restore_module_environment = pytest.fixture(autouse=True, scope="module")(
    _environment_restored
)


@pytest.fixture
def duck_settings(tmp_path: Path) -> Settings:
    """Embedded deployment (DuckDB warehouse) in a fresh folder."""
    return make_settings(tmp_path / "bqx")


class _Admin:
    """Runs statements on the server's ``postgres`` database, one fresh connection
    each time (a test may restart the server under a long-lived connection)."""

    def execute(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(
            f"host={PG_HOST} port=5432 user=postgres dbname=postgres",
            autocommit=True,
            connect_timeout=5,
        ) as conn:
            conn.execute(sql)


@pytest.fixture(scope="session")
def pg_admin():
    """Admin access to the PostgreSQL server; fails (never skips) when it is down."""
    import psycopg

    admin = _Admin()
    try:
        admin.execute("select 1")
    except psycopg.OperationalError as exc:  # fail, never skip
        pytest.fail(f"PostgreSQL at {PG_HOST}:5432 is unreachable: {exc}")
    return admin


@pytest.fixture
def pg_database(pg_admin) -> str:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    name = f"bqx_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    pg_admin.execute(f'create database "{name}"')
    yield name
    pg_admin.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture
def pg_settings(tmp_path: Path, pg_database: str) -> Settings:
    """Production-style warehouse on the session's fresh PostgreSQL database."""
    return make_settings(
        tmp_path / "bqx",
        warehouse="postgres",
        pg_host=PG_HOST,
        pg_database=pg_database,
        pg_user="postgres",
    )


@pytest.fixture(scope="session")
def redis_db() -> int:
    """A Redis db index (1-15) owned by this test process, flushed before use.

    The index is claimed with ``SET NX`` on a key in db 0, so concurrent test runs
    (pytest-xdist workers, several checkouts) never share one.
    """
    import redis

    admin = redis.Redis(host=PG_HOST, port=6379, db=0, socket_timeout=2)
    owner = f"{socket.gethostname()}:{os.getpid()}"
    try:
        index = next(
            (
                i
                for i in range(1, 16)
                if admin.set(f"bqx:test:redis-db:{i}", owner, nx=True, ex=2 * 3600)
            ),
            None,
        )
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis at {PG_HOST}:6379 is unreachable: {exc}")
    if index is None:
        pytest.fail(
            "all Redis db indexes 1-15 are claimed by other test runs "
            "(keys bqx:test:redis-db:* in db 0)"
        )
    client = redis.Redis(host=PG_HOST, port=6379, db=index, socket_timeout=2)
    client.flushdb()
    yield index
    client.flushdb()
    if admin.get(f"bqx:test:redis-db:{index}") == owner.encode():
        admin.delete(f"bqx:test:redis-db:{index}")


def flush_redis(db: int) -> None:
    """Empty one Redis db (Feast keeps a newer row over an older one)."""
    import redis

    redis.Redis(host=PG_HOST, port=6379, db=db, socket_timeout=2).flushdb()


@pytest.fixture
def redis_settings(pg_settings: Settings, redis_db: int) -> Settings:
    """Production deployment: PostgreSQL warehouse and a flushed Redis online store."""
    flush_redis(redis_db)
    return pg_settings.model_copy(
        update={"deployment": "production", "redis_db": redis_db}
    )


@pytest.fixture(params=["duckdb", "postgres"])
def any_settings(request, tmp_path: Path) -> Settings:
    """Each test using this runs on both warehouses."""
    if request.param == "duckdb":
        return make_settings(tmp_path / "bqx")
    return request.getfixturevalue("pg_settings")


@pytest.fixture(scope="session")
def real_bars_dir() -> Path | None:
    """The real January 2024 bars of ../shared/data/fx_m1, when present."""
    return SHARED_DATA if SHARED_DATA.is_dir() else None


@pytest.fixture(scope="session")
def pg_database_factory(pg_admin):
    """Creates fresh databases for module-scoped fixtures; drops them at the end."""
    names: list[str] = []

    def create() -> str:
        name = f"bqx_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        pg_admin.execute(f'create database "{name}"')
        names.append(name)
        return name

    yield create
    for name in names:
        pg_admin.execute(f'drop database if exists "{name}" with (force)')


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
