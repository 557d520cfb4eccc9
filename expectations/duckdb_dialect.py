"""A DuckDB SQLAlchemy dialect whose cursors buffer their results.

Great Expectations runs each metric query in ``with engine.connect()`` and reads the
result after the connection went back to the pool. A PostgreSQL cursor holds its rows
client-side, so that works; a DuckDB cursor (``duckdb_engine``) streams from the
connection and the result is gone by then (``fetchone()`` gives ``None``). This
dialect fetches every result right after ``execute`` (the gate's queries return few
rows: counts and at most a few hundred offending rows), so GX sees the same
behaviour on both warehouses. URL scheme: ``duckdb+bqx:///path/to/file.duckdb``.
"""

from __future__ import annotations

import threading
from typing import Any

from duckdb_engine import Dialect as _DuckDBDialect
from sqlalchemy import pool
from sqlalchemy.dialects import registry

SCHEME = "duckdb+bqx"
_OPEN: list[Any] = []  # every DuckDB connection this dialect opened and not closed
_LOCK = threading.Lock()


def close_all() -> int:
    """Close every connection the dialect still has open; returns how many.

    DuckDB allows one writer process per file: the gate calls this when it is
    done, so dbt (a child process) can open the warehouse right after. GX keeps
    engines of its own (one per datasource object), so disposing one is not enough.
    """
    with _LOCK:
        conns, _OPEN[:] = list(_OPEN), []
    for conn in conns:
        conn.close()
    return len(conns)


class _BufferedCursor:
    """A DBAPI cursor over a ``duckdb_engine`` cursor that fetches eagerly."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._rows: list = []
        self._pos = 0
        self._description = None

    def execute(self, statement: str, parameters: Any = None, context: Any = None):
        self._inner.execute(statement, parameters, context)
        self._description = self._inner.description
        self._rows = self._inner.fetchall() if self._description else []
        self._pos = 0

    def executemany(self, statement: str, parameters: Any = None, context: Any = None):
        self._inner.executemany(statement, parameters, context)
        self._description, self._rows, self._pos = None, [], 0

    @property
    def description(self):
        return self._description

    @property
    def rowcount(self) -> int:
        return len(self._rows) if self._description else -1

    def fetchone(self):
        if self._pos >= len(self._rows):
            return None
        self._pos += 1
        return self._rows[self._pos - 1]

    def fetchmany(self, size: int | None = None) -> list:
        size = 1 if size is None else size
        chunk = self._rows[self._pos : self._pos + size]
        self._pos += len(chunk)
        return chunk

    def fetchall(self) -> list:
        rest = self._rows[self._pos :]
        self._pos = len(self._rows)
        return rest

    def close(self) -> None:
        self._rows, self._pos = [], 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _BufferedConnection:
    """A ``duckdb_engine`` connection whose cursors are :class:`_BufferedCursor`."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def cursor(self) -> _BufferedCursor:
        return _BufferedCursor(self._inner.cursor())

    def close(self) -> None:
        self._inner.close()
        with _LOCK:
            if self._inner in _OPEN:
                _OPEN.remove(self._inner)

    @property
    def closed(self) -> bool:
        return bool(self._inner.closed)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class BufferedDuckDBDialect(_DuckDBDialect):
    """``duckdb_engine``'s dialect with buffered cursors and no connection pool."""

    supports_statement_cache = False

    @classmethod
    def get_pool_class(cls, url: Any) -> type[pool.Pool]:
        return pool.NullPool  # a connection is closed when GX gives it back

    def connect(self, *cargs: Any, **cparams: Any) -> Any:
        """Open the file with exactly the given ``config`` (``connect_args``).

        DuckDB refuses a second in-process connection to a file with a different
        configuration, so no user-agent or other option is added: pass the
        warehouse's own (memory limit, threads).
        """
        import duckdb
        from duckdb_engine import ConnectionWrapper

        for key in ("url_config", "preload_extensions", "register_filesystems"):
            cparams.pop(key, None)
        conn = duckdb.connect(*cargs, **cparams)
        conn.execute("set TimeZone = 'UTC'")
        wrapped = ConnectionWrapper(conn)
        with _LOCK:
            _OPEN.append(wrapped)
        return _BufferedConnection(wrapped)


registry.register("duckdb.bqx", __name__, "BufferedDuckDBDialect")
