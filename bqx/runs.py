"""Run history: one row in ``ops.runs`` per pipeline command, on either warehouse.

Usage (in a CLI command)::

    with record_run(settings, "ingest csv", {"path": str(path)}) as run:
        run.stage("read")
        frame = read(path)
        run.stage("load")
        result = load(frame)
        run.rows(len(frame), result.inserted + result.updated)

The row is written when the command starts (status ``running``) and rewritten when
it ends (``ok`` or ``failed`` with the stage that failed and why); a failure is
re-raised. Arguments are stored as JSON with secrets masked. The warehouse is opened
only for those two writes, so a DuckDB file is never held during the command.
Recording problems are logged and never hide the command's own outcome.
"""

from __future__ import annotations

import functools
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from bqx.secrets import install_log_masking, mask, scrub_exception, secret_values
from bqx.settings import Settings
from bqx.warehouse import Warehouse, open_warehouse

log = logging.getLogger(__name__)

OPS_SCHEMA_VERSION = 1
RUN_COLUMNS = (
    "run_id", "command", "args", "started_at", "ended_at", "rows_in", "rows_out",
    "status", "stage", "error",
)  # fmt: skip
SECRET_WORDS = ("password", "token", "secret", "credential", "api_key", "apikey")
_ERROR_CHARS = 2000
_CURRENT: ContextVar[Run | None] = ContextVar("bqx_current_run", default=None)

_DDL = f"""
create schema if not exists ops;
create table if not exists ops.schema_version (
    component text primary key,
    version integer not null,
    applied_at timestamptz not null
);
create table if not exists ops.runs (
    run_id text primary key,
    command text not null,
    args text not null,
    started_at timestamptz not null,
    ended_at timestamptz,
    rows_in bigint,
    rows_out bigint,
    status text not null,
    stage text,
    error text
);
insert into ops.schema_version as v (component, version, applied_at)
values ('ops', {OPS_SCHEMA_VERSION}, now())
on conflict (component) do update set version = excluded.version,
    applied_at = excluded.applied_at
where v.version < excluded.version;
"""

_UPSERT = (
    f"insert into ops.runs ({', '.join(RUN_COLUMNS)}) "
    f"values ({', '.join('?' for _ in RUN_COLUMNS)}) "
    "on conflict (run_id) do update set "
    + ", ".join(f"{c} = excluded.{c}" for c in RUN_COLUMNS[1:])
)


def _transaction(wh: Warehouse, statements: list[tuple[str, Sequence[Any]]]) -> None:
    """Run ``statements`` in one transaction (PostgreSQL: retried as a whole)."""
    if wh.kind != "postgres":
        wh.execute("begin transaction")
        try:
            for sql, params in statements:
                wh.execute(sql, params)
            wh.execute("commit")
        except BaseException:
            wh.execute("rollback")
            raise
        return

    def work(conn: Any) -> None:
        conn.execute("select pg_advisory_xact_lock(hashtext('bqx.ops.ddl'))")
        for sql, params in statements:
            conn.execute(
                sql.replace("?", "%s") if params else sql, list(params) or None
            )

    # one pooled transaction, retried as a whole on transient errors
    wh.transaction(work)  # type: ignore[attr-defined]


def ensure_ops_schema(wh: Warehouse) -> None:
    """Create schema ``ops`` (``schema_version``, ``runs``) and record its version."""
    _transaction(wh, [(_DDL, ())])


def schema_version(wh: Warehouse) -> int | None:
    """The recorded version of the ``ops`` schema (None when not created yet)."""
    exists = wh.query_df(
        "select count(*) as n from information_schema.tables "
        "where table_schema = 'ops' and table_name = 'schema_version'"
    )
    if int(exists["n"][0]) == 0:
        return None
    rows = wh.query_df("select version from ops.schema_version where component = 'ops'")
    return None if rows.empty else int(rows["version"][0])


def clean_args(
    args: Mapping[str, Any] | Sequence[Any] | None, settings: Settings
) -> str:
    """JSON of the command's arguments: secret-named keys and secret values masked."""
    secrets = secret_values(settings)

    def clean(value: Any, key: str = "") -> Any:
        if key and any(w in key.lower() for w in SECRET_WORDS) and value:
            return "***"
        if isinstance(value, Mapping):
            return {str(k): clean(v, str(k)) for k, v in value.items()}
        if isinstance(value, (list, tuple, set)):
            return [clean(v) for v in value]
        if value is None or isinstance(value, (bool, int, float)):
            return value
        return mask(str(value), secrets)

    return json.dumps(clean(args if args is not None else {}), sort_keys=True)


@dataclass
class Run:
    """The handle of a recorded run: set its stage and row counts as it goes."""

    run_id: str
    command: str
    args: str
    started_at: datetime
    ended_at: datetime | None = None
    rows_in: int | None = None
    rows_out: int | None = None
    status: str = "running"
    current_stage: str | None = None
    error: str | None = None
    stages: list[str] = field(default_factory=list)

    def stage(self, name: str) -> None:
        """Mark the start of stage ``name`` (a failure records the current stage)."""
        self.current_stage = name
        self.stages.append(name)

    def rows(self, in_: int | None = None, out: int | None = None) -> None:
        """Set the rows read and the rows written (None leaves a count as it is)."""
        if in_ is not None:
            self.rows_in = int(in_)
        if out is not None:
            self.rows_out = int(out)

    def add_rows(self, in_: int = 0, out: int = 0) -> None:
        """Add to the rows read and written (for commands that work in batches)."""
        self.rows_in = (self.rows_in or 0) + int(in_)
        self.rows_out = (self.rows_out or 0) + int(out)

    def values(self) -> tuple:
        return (
            self.run_id, self.command, self.args, self.started_at, self.ended_at,
            self.rows_in, self.rows_out, self.status, self.current_stage, self.error,
        )  # fmt: skip


def _write(settings: Settings, run: Run) -> bool:
    """Upsert the run's row; logged (never raised) on failure.

    DuckDB: retried briefly (another process may hold the file for a moment);
    PostgreSQL: the pooled warehouse already waits for the server and retries.
    """
    attempts = 1 if settings.warehouse == "postgres" else 3
    for attempt in range(1, attempts + 1):
        try:
            with open_warehouse(settings) as wh:
                _transaction(wh, [(_DDL, ()), (_UPSERT, run.values())])
            return True
        except Exception as exc:  # noqa: BLE001 - recording must not break the run
            text = mask(f"{type(exc).__name__}: {exc}", secret_values(settings))
            if attempt == attempts:
                log.warning("cannot record run %s in ops.runs: %s", run.run_id, text)
                return False
            time.sleep(0.5 * attempt)
    return False


def _succeeded(exc: BaseException) -> bool:
    """``typer.Exit(0)`` / ``SystemExit(0)`` end a command without failing it."""
    code = getattr(exc, "exit_code", getattr(exc, "code", "failed"))
    return code in (0, None)


@contextmanager
def record_run(
    settings: Settings,
    command: str,
    args: Mapping[str, Any] | Sequence[Any] | None = None,
) -> Iterator[Run]:
    """Record the command run inside this block as one row of ``ops.runs``.

    Also masks the secrets of ``settings`` in the root logger's handlers.

    Args:
        settings: the settings of the command (its warehouse gets the row).
        command: the command, e.g. ``"features build"``.
        args: its arguments (secret-named keys and secret values are masked).

    Yields:
        The :class:`Run` handle (``.stage(name)``, ``.rows(in_, out)``).

    Raises:
        Whatever the block raises, with secret values masked in its message.
    """
    install_log_masking(settings)
    run = Run(
        run_id=uuid.uuid4().hex,
        command=command,
        args=clean_args(args, settings),
        started_at=datetime.now(UTC),
    )
    _write(settings, run)
    token = _CURRENT.set(run)
    try:
        yield run
    except BaseException as exc:
        secrets = secret_values(settings)
        if _succeeded(exc):
            run.status = "ok"
        else:
            scrub_exception(exc, secrets)
            run.status = "failed"
            text = mask(f"{type(exc).__name__}: {exc}".strip(), secrets)
            run.error = text[:_ERROR_CHARS]
        run.ended_at = datetime.now(UTC)
        _write(settings, run)
        raise
    finally:
        _CURRENT.reset(token)
    run.status = "ok"
    run.ended_at = datetime.now(UTC)
    _write(settings, run)


def current_run() -> Run:
    """The run being recorded, or a detached handle (so parts can always report).

    Library code may call ``current_run().stage("load")`` or
    ``current_run().add_rows(n, m)`` whether or not a command records it.
    """
    run = _CURRENT.get()
    if run is None:
        run = Run(run_id="", command="", args="{}", started_at=datetime.now(UTC))
    return run


def recorded(command: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator for a typer command: record each call with :func:`record_run`.

    The command's keyword arguments become ``args``; the body reports with
    :func:`current_run`. Put it under ``@app.command(...)``. When the settings
    are invalid the command runs unrecorded (and reports the bad setting itself).
    """

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            from pydantic import ValidationError

            from bqx.secrets import SecretError, resolved
            from bqx.settings import get_settings

            try:
                settings = resolved(get_settings())
            except (ValidationError, SecretError):
                return fn(*args, **kwargs)
            with record_run(settings, command, kwargs):
                return fn(*args, **kwargs)

        return wrapper

    return decorate


def list_runs(settings: Settings, last: int = 20) -> pd.DataFrame:
    """The ``last`` runs, newest first (an empty frame when none is recorded)."""
    with open_warehouse(settings) as wh:
        exists = wh.query_df(
            "select count(*) as n from information_schema.tables "
            "where table_schema = 'ops' and table_name = 'runs'"
        )
        if int(exists["n"][0]) == 0:
            return pd.DataFrame(columns=list(RUN_COLUMNS))
        frame = wh.query_df(
            f"select {', '.join(RUN_COLUMNS)} from ops.runs "
            "order by started_at desc, run_id desc limit ?",
            [int(last)],
        )
    for col in ("started_at", "ended_at"):
        frame[col] = pd.to_datetime(frame[col], utc=True)
    return frame
