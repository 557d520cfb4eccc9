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


class PostgresWarehouse(Warehouse):
    """The production warehouse: PostgreSQL (or Aurora PostgreSQL)."""

    kind = "postgres"

    def __init__(self, settings: Settings) -> None:
        import psycopg

        self.target = settings.pg_target
        try:
            self.conn = psycopg.connect(settings.pg_dsn, autocommit=True, connect_timeout=5)
        except psycopg.OperationalError as exc:
            raise WarehouseError(
                f"cannot connect to PostgreSQL at {self.target}: "
                f"{str(exc).strip().splitlines()[-1]}"
            ) from exc
        self.conn.execute("set timezone = 'UTC'")

    def ensure_schema(self) -> None:
        with self.conn.transaction():
            self.conn.execute("select pg_advisory_xact_lock(hashtext('bqx.raw.ddl'))")
            self.conn.execute(_DDL_COMMON)
            self.conn.execute(
                f"""create table if not exists raw.candles_m1 (
                    pair text not null,
                    bar_start timestamptz not null,
                    {_CANDLE_TYPES},
                    primary key (pair, bar_start)
                ) partition by range (bar_start)"""
            )

    def _ensure_partitions(self, months: Iterable[pd.Timestamp]) -> None:
        for month in sorted(set(months)):
            start = month.strftime("%Y-%m-01")
            end = (month + pd.offsets.MonthBegin(1)).strftime("%Y-%m-01")
            self.conn.execute(
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
        cols = ", ".join(CANDLE_COLUMNS)
        with self.conn.transaction():
            self.conn.execute("select pg_advisory_xact_lock(hashtext('bqx.raw.ddl'))")
            months = pd.to_datetime(
                table.column("bar_start").to_pandas()
            ).dt.tz_convert("UTC").dt.tz_localize(None).dt.to_period("M").unique()
            self._ensure_partitions(m.to_timestamp() for m in months)
            self.conn.execute(
                "create temp table bqx_batch (like raw.candles_m1 including defaults) "
                "on commit drop"
            )
            with self.conn.cursor() as cur:
                with cur.copy(
                    f"copy bqx_batch ({cols}) from stdin with (format csv, header true)"
                ) as copy:
                    copy.write(buf.getvalue())
                existing, changed = cur.execute(_COUNT_SQL).fetchone()
                cur.execute(_upsert_sql("raw.candles_m1", "bqx_batch"))
                for pair, ts in _watermark_rows(watermarks or {}):
                    cur.execute(_WATERMARK_SQL.replace("?", "%s"), (pair, ts))
        return LoadResult(table.num_rows - existing, changed, existing - changed)

    def quarantine(self, rejects: pd.DataFrame) -> int:
        if rejects.empty:
            return 0
        rows = rejects.loc[:, list(REJECT_COLUMNS)].astype(object)
        rows = rows.where(rows.notna(), None).itertuples(index=False, name=None)
        with self.conn.transaction(), self.conn.cursor() as cur:
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

    def query_df(self, sql, params=None) -> pd.DataFrame:
        with self.conn.cursor() as cur:
            cur.execute(sql.replace("?", "%s"), list(params or []) or None)
            if cur.description is None:
                return pd.DataFrame()
            cols = [d.name for d in cur.description]
            return pd.DataFrame(cur.fetchall(), columns=cols)

    def execute(self, sql, params=None) -> None:
        self.conn.execute(sql.replace("?", "%s") if params else sql, list(params or []) or None)

    def close(self) -> None:
        self.conn.close()


def open_warehouse(settings: Settings, read_only: bool = False) -> Warehouse:
    """Open the configured warehouse (``settings.warehouse``)."""
    if settings.warehouse == "postgres":
        return PostgresWarehouse(settings)
    return DuckDBWarehouse(settings, read_only=read_only)
