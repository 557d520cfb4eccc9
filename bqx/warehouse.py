"""The warehouse: raw bar tables and their bulk, idempotent loaders.

Two engines behind one small interface (:class:`Warehouse`):

* DuckDB, the embedded default: one file, the frame is handed over as Arrow.
* PostgreSQL: ``raw.candles_m1`` is range-partitioned by month (partitions created on
  demand); a load COPYs the batch into a temporary table, then runs one
  ``INSERT ... ON CONFLICT DO UPDATE ... WHERE <values differ>``.

Loading the same bars twice changes nothing (not even ``ingested_at``); a batch and
its per-pair watermarks commit in one transaction.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterable

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

from bqx.settings import Settings

PRICE = pa.decimal128(18, 6)
MID_COLUMNS = ("open", "high", "low", "close")
QUOTE_COLUMNS = (
    "bid_open", "bid_high", "bid_low", "bid_close",
    "ask_open", "ask_high", "ask_low", "ask_close", "spread",
)  # fmt: skip
VALUE_COLUMNS = MID_COLUMNS + ("volume",) + QUOTE_COLUMNS + ("source",)
CANDLE_COLUMNS = ("pair", "bar_start") + VALUE_COLUMNS
REJECT_COLUMNS = ("source", "record_ref", "pair", "raw_record", "reason")

_CANDLE_TYPES = ",\n    ".join(
    [f"{c} decimal(18, 6) not null" for c in MID_COLUMNS]
    + ["volume bigint not null"]
    + [f"{c} decimal(18, 6)" for c in QUOTE_COLUMNS]
    + ["source text not null", "ingested_at timestamptz not null default now()"]
)
_DDL_COMMON = """
create schema if not exists raw;
create table if not exists raw.candles_rejected (
    source text not null,
    record_ref text not null,
    pair text,
    raw_record text,
    reason text not null,
    rejected_at timestamptz not null default now(),
    primary key (source, record_ref)
);
create table if not exists raw.ingest_watermarks (
    pair text primary key,
    last_bar_start timestamptz not null,
    updated_at timestamptz not null default now()
);
"""


@dataclass(frozen=True)
class LoadResult:
    """What one load did: rows new, rows changed, rows already identical."""

    inserted: int
    updated: int
    unchanged: int

    @property
    def total(self) -> int:
        return self.inserted + self.updated + self.unchanged

    def __add__(self, other: LoadResult) -> LoadResult:
        return LoadResult(
            self.inserted + other.inserted,
            self.updated + other.updated,
            self.unchanged + other.unchanged,
        )


class WarehouseError(RuntimeError):
    """A warehouse problem with a message fit for the user."""


def candles_to_arrow(df: pd.DataFrame, source: str | None = None) -> pa.Table:
    """Normalise a frame of candles to the exact Arrow schema of ``raw.candles_m1``.

    Prices may be floats (rounded to 6 decimals), decimal strings or ``Decimal``
    objects; strings with more than 6 decimals raise instead of being rounded.

    Raises:
        WarehouseError: missing columns or duplicate (pair, bar_start) keys.
    """
    missing = [c for c in ("pair", "bar_start", *MID_COLUMNS, "volume") if c not in df]
    if missing:
        raise WarehouseError(f"candles frame lacks columns {missing}")
    if source is None and "source" not in df:
        raise WarehouseError("candles need a source (argument or column)")
    dup = df.duplicated(["pair", "bar_start"], keep=False)
    if dup.any():
        first = df.loc[dup, ["pair", "bar_start"]].iloc[0]
        raise WarehouseError(
            f"batch has {int(dup.sum())} rows with a repeated key, e.g. "
            f"{first['pair']} {first['bar_start']}; deduplicate before loading"
        )
    n = len(df)
    ts = pd.to_datetime(df["bar_start"], utc=True)
    arrays: dict[str, pa.Array] = {
        "pair": pa.array(df["pair"].astype(str), pa.string()),
        "bar_start": pa.array(ts, pa.timestamp("us", tz="UTC")),
    }
    for col in MID_COLUMNS + QUOTE_COLUMNS:
        arrays[col] = _price_array(df[col]) if col in df else pa.nulls(n, PRICE)
    arrays["volume"] = pa.array(df["volume"].astype("int64"), pa.int64())
    src = df["source"].astype(str) if source is None else [source] * n
    arrays["source"] = pa.array(src, pa.string())
    return pa.table({c: arrays[c] for c in CANDLE_COLUMNS})


def _price_array(values: pd.Series) -> pa.Array:
    if values.dtype == object and len(values) and isinstance(
        values.dropna().iloc[0] if values.notna().any() else None, Decimal
    ):
        return pa.array(values, PRICE)
    arr = pa.array(values, from_pandas=True)
    return arr.cast(PRICE)


class Warehouse:
    """Interface shared by the DuckDB and PostgreSQL warehouses."""

    kind: str

    def ensure_schema(self) -> None:
        raise NotImplementedError

    def upsert_candles(
        self,
        df: pd.DataFrame,
        source: str | None = None,
        watermarks: dict[str, Any] | None = None,
    ) -> LoadResult:
        """Insert new bars, update changed ones, leave identical ones untouched.

        Args:
            df: candles (see :func:`candles_to_arrow`); keys must be unique.
            source: value of the ``source`` column when the frame has none.
            watermarks: ``{pair: last bar_start}`` committed with the bars.
        """
        raise NotImplementedError

    def quarantine(self, rejects: pd.DataFrame) -> int:
        """Store rejected records with their reason; returns how many were new."""
        raise NotImplementedError

    def query_df(self, sql: str, params: Iterable[Any] | None = None) -> pd.DataFrame:
        raise NotImplementedError

    def execute(self, sql: str, params: Iterable[Any] | None = None) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def count_candles(self) -> int:
        return int(self.query_df("select count(*) as n from raw.candles_m1")["n"][0])


def _upsert_sql(target: str, stage: str) -> str:
    cols = ", ".join(CANDLE_COLUMNS)
    sets = ", ".join(f"{c} = excluded.{c}" for c in VALUE_COLUMNS)
    old = ", ".join(f"t.{c}" for c in VALUE_COLUMNS)
    new = ", ".join(f"excluded.{c}" for c in VALUE_COLUMNS)
    return (
        f"insert into {target} as t ({cols}) select {cols} from {stage} "
        f"on conflict (pair, bar_start) do update set {sets}, ingested_at = now() "
        f"where ({old}) is distinct from ({new})"
    )


_COUNT_SQL = f"""select count(*), count(*) filter (where
    ({", ".join(f"t.{c}" for c in VALUE_COLUMNS)}) is distinct from
    ({", ".join(f"b.{c}" for c in VALUE_COLUMNS)}))
    from bqx_batch b join raw.candles_m1 t using (pair, bar_start)"""


def _watermark_rows(watermarks: dict[str, Any]) -> list[tuple[str, pd.Timestamp]]:
    return [(p, pd.Timestamp(t).tz_convert("UTC")) for p, t in watermarks.items()]


_WATERMARK_SQL = (
    "insert into raw.ingest_watermarks as w (pair, last_bar_start, updated_at) "
    "values (?, ?, now()) on conflict (pair) do update set "
    "last_bar_start = greatest(w.last_bar_start, excluded.last_bar_start), "
    "updated_at = now()"
)
_REJECT_SQL = (
    "insert into raw.candles_rejected (source, record_ref, pair, raw_record, reason) "
    "select source, record_ref, pair, raw_record, reason from {stage} "
    "on conflict (source, record_ref) do nothing"
)


class DuckDBWarehouse(Warehouse):
    """The embedded warehouse: a DuckDB file."""

    kind = "duckdb"

    def __init__(self, settings: Settings, read_only: bool = False) -> None:
        import duckdb

        assert settings.duckdb_path is not None
        settings.duckdb_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.con = duckdb.connect(
                str(settings.duckdb_path),
                read_only=read_only,
                config={
                    "memory_limit": settings.duckdb_memory_limit,
                    "threads": settings.duckdb_threads,
                },
            )
        except duckdb.IOException as exc:
            raise WarehouseError(
                f"cannot open DuckDB warehouse {settings.duckdb_path}: {exc}"
            ) from exc
        self.con.execute("set TimeZone = 'UTC'")
        self.target = str(settings.duckdb_path)

    def ensure_schema(self) -> None:
        self.con.execute(
            _DDL_COMMON
            + f"""
            create table if not exists raw.candles_m1 (
                pair text not null,
                bar_start timestamptz not null,
                {_CANDLE_TYPES},
                primary key (pair, bar_start)
            );"""
        )

    def upsert_candles(self, df, source=None, watermarks=None) -> LoadResult:
        table = candles_to_arrow(df, source)
        if table.num_rows == 0 and not watermarks:
            return LoadResult(0, 0, 0)
        con = self.con
        con.execute("begin transaction")
        try:
            con.register("bqx_batch", table)
            existing, changed = con.execute(_COUNT_SQL).fetchone()
            if table.num_rows:
                con.execute(_upsert_sql("raw.candles_m1", "bqx_batch"))
            for row in _watermark_rows(watermarks or {}):
                con.execute(_WATERMARK_SQL, row)
            con.execute("commit")
        except Exception:
            con.execute("rollback")
            raise
        finally:
            con.unregister("bqx_batch")
        return LoadResult(table.num_rows - existing, changed, existing - changed)

    def quarantine(self, rejects: pd.DataFrame) -> int:
        if rejects.empty:
            return 0
        frame = rejects.loc[:, list(REJECT_COLUMNS)].astype("string")
        before = self.query_df("select count(*) as n from raw.candles_rejected")["n"][0]
        self.con.register("bqx_rejects", frame)
        try:
            self.con.execute(_REJECT_SQL.format(stage="bqx_rejects"))
        finally:
            self.con.unregister("bqx_rejects")
        after = self.query_df("select count(*) as n from raw.candles_rejected")["n"][0]
        return int(after - before)

    def query_df(self, sql, params=None) -> pd.DataFrame:
        return self.con.execute(sql, list(params or [])).df()

    def execute(self, sql, params=None) -> None:
        self.con.execute(sql, list(params or []))

    def close(self) -> None:
        self.con.close()


_POOLS: dict[tuple[str, int, int], Any] = {}
#: SQLSTATEs worth retrying a whole transaction for: serialization failure,
#: deadlock, too many connections, admin/crash shutdown, cannot connect now.
_TRANSIENT_SQLSTATES = {"40001", "40P01", "53300", "57P01", "57P02", "57P03"}


def _pg_pool(settings: Settings):
    """One bounded connection pool per (DSN, size, timeout), shared in the process."""
    from psycopg_pool import ConnectionPool

    key = (settings.pg_dsn, settings.pg_pool_size, settings.pg_statement_timeout_ms)
    pool = _POOLS.get(key)
    if pool is None or pool.closed:
        options = (
            f"-c statement_timeout={settings.pg_statement_timeout_ms}"
            if settings.pg_statement_timeout_ms
            else ""
        )

        def configure(conn) -> None:
            conn.execute("set timezone = 'UTC'")

        pool = ConnectionPool(
            conninfo=settings.pg_dsn,
            min_size=0,
            max_size=settings.pg_pool_size,
            num_workers=1,
            kwargs={"autocommit": True, "connect_timeout": 5, "options": options},
            configure=configure,
            timeout=15,
            open=False,
            name=f"bqx-{settings.pg_database}",
        )
        pool.open(wait=False)
        if not _POOLS:
            import atexit

            atexit.register(close_pools)
        _POOLS[key] = pool
    return pool


def close_pools() -> None:
    """Close every PostgreSQL pool of this process."""
    while _POOLS:
        _, pool = _POOLS.popitem()
        pool.close(timeout=2)


def is_transient(exc: BaseException) -> bool:
    """True for errors after which retrying a whole transaction is safe and useful."""
    import psycopg

    if isinstance(exc, psycopg.OperationalError):
        return True  # connection refused/reset/lost: the transaction was rolled back
    return getattr(exc, "sqlstate", None) in _TRANSIENT_SQLSTATES


class PostgresWarehouse(Warehouse):
    """The production warehouse: PostgreSQL (or Aurora PostgreSQL).

    Connections come from a bounded pool; every write is one transaction that is
    retried as a whole (with backoff and jitter) after a transient error, so a
    restart of the server mid-load converges to the same tables. A statement
    outside a transaction (:meth:`execute`) is never retried.
    """

    kind = "postgres"

    def __init__(self, settings: Settings) -> None:
        import psycopg
        from psycopg_pool import PoolTimeout

        self.target = settings.pg_target
        self.retries = settings.pg_retries
        self.pool = _pg_pool(settings)
        try:
            with self.pool.connection(timeout=5) as conn:
                conn.execute("select 1")
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise WarehouseError(
                f"cannot connect to PostgreSQL at {self.target}: "
                f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else exc!r}"
            ) from None

    def transaction(self, work):
        """Run ``work(conn)`` in one transaction, retried whole on transient errors.

        ``work`` must do nothing outside the database (it may run more than once).
        """
        from tenacity import (
            retry,
            retry_if_exception,
            stop_after_attempt,
            wait_exponential_jitter,
        )

        @retry(
            retry=retry_if_exception(is_transient),
            stop=stop_after_attempt(self.retries + 1),
            wait=wait_exponential_jitter(initial=0.3, max=5.0),
            reraise=True,
        )
        def attempt():
            with self.pool.connection() as conn, conn.transaction():
                return work(conn)

        try:
            return attempt()
        except Exception as exc:
            if is_transient(exc):
                raise WarehouseError(
                    f"PostgreSQL at {self.target} failed {self.retries + 1} times: "
                    f"{str(exc).strip().splitlines()[0]}"
                ) from exc
            raise

    def ensure_schema(self) -> None:
        def work(conn) -> None:
            conn.execute("select pg_advisory_xact_lock(hashtext('bqx.raw.ddl'))")
            conn.execute(_DDL_COMMON)
            conn.execute(
                f"""create table if not exists raw.candles_m1 (
                    pair text not null,
                    bar_start timestamptz not null,
                    {_CANDLE_TYPES},
                    primary key (pair, bar_start)
                ) partition by range (bar_start)"""
            )

        self.transaction(work)

    @staticmethod
    def _ensure_partitions(conn, months: Iterable[pd.Timestamp]) -> None:
        for month in sorted(set(months)):
            start = month.strftime("%Y-%m-01")
            end = (month + pd.offsets.MonthBegin(1)).strftime("%Y-%m-01")
            conn.execute(
                f"create table if not exists raw.candles_m1_{month:%Y%m} "
                f"partition of raw.candles_m1 for values from "
                f"('{start} 00:00:00+00') to ('{end} 00:00:00+00')"
            )

    def upsert_candles(self, df, source=None, watermarks=None) -> LoadResult:
        table = candles_to_arrow(df, source)
        if table.num_rows == 0 and not watermarks:
            return LoadResult(0, 0, 0)
        buf = io.BytesIO()
        pa_csv.write_csv(table, buf)
        payload = buf.getvalue()
        cols = ", ".join(CANDLE_COLUMNS)
        months = (
            pd.to_datetime(table.column("bar_start").to_pandas())
            .dt.tz_convert("UTC")
            .dt.tz_localize(None)
            .dt.to_period("M")
            .unique()
        )

        def work(conn) -> tuple[int, int]:
            conn.execute("select pg_advisory_xact_lock(hashtext('bqx.raw.ddl'))")
            self._ensure_partitions(conn, (m.to_timestamp() for m in months))
            conn.execute(
                "create temp table bqx_batch (like raw.candles_m1 including defaults) "
                "on commit drop"
            )
            with conn.cursor() as cur:
                with cur.copy(
                    f"copy bqx_batch ({cols}) from stdin with (format csv, header true)"
                ) as copy:
                    copy.write(payload)
                existing, changed = cur.execute(_COUNT_SQL).fetchone()
                cur.execute(_upsert_sql("raw.candles_m1", "bqx_batch"))
                for pair, ts in _watermark_rows(watermarks or {}):
                    cur.execute(_WATERMARK_SQL.replace("?", "%s"), (pair, ts))
            return existing, changed

        existing, changed = self.transaction(work)
        return LoadResult(table.num_rows - existing, changed, existing - changed)

    def quarantine(self, rejects: pd.DataFrame) -> int:
        if rejects.empty:
            return 0
        rows = rejects.loc[:, list(REJECT_COLUMNS)].astype(object)
        rows = list(rows.where(rows.notna(), None).itertuples(index=False, name=None))

        def work(conn) -> int:
            with conn.cursor() as cur:
                cur.execute(
                    "create temp table bqx_rejects (source text, record_ref text, "
                    "pair text, raw_record text, reason text) on commit drop"
                )
                with cur.copy(
                    "copy bqx_rejects (source, record_ref, pair, raw_record, reason) "
                    "from stdin"
                ) as copy:
                    for row in rows:
                        copy.write_row(row)
                cur.execute(_REJECT_SQL.format(stage="bqx_rejects"))
                return cur.rowcount

        return self.transaction(work)

    def query_df(self, sql, params=None) -> pd.DataFrame:
        def work(conn) -> pd.DataFrame:
            with conn.cursor() as cur:
                cur.execute(sql.replace("?", "%s"), list(params or []) or None)
                if cur.description is None:
                    return pd.DataFrame()
                cols = [d.name for d in cur.description]
                return pd.DataFrame(cur.fetchall(), columns=cols)

        if sql.lstrip().lower().startswith(("select", "with")):
            return self.transaction(work)  # a read is safe to retry
        with self.pool.connection() as conn:
            return work(conn)

    def execute(self, sql, params=None) -> None:
        """Run one statement as is: never retried (it may have applied)."""
        with self.pool.connection() as conn:
            conn.execute(
                sql.replace("?", "%s") if params else sql, list(params or []) or None
            )

    def close(self) -> None:
        """Connections go back to the pool (closed at exit)."""


def open_warehouse(settings: Settings, read_only: bool = False) -> Warehouse:
    """Open the configured warehouse (``settings.warehouse``)."""
    if settings.warehouse == "postgres":
        return PostgresWarehouse(settings)
    return DuckDBWarehouse(settings, read_only=read_only)
