"""The warehouse: raw bar tables and their bulk, idempotent loaders.

Two engines behind one small interface (:class:`Warehouse`):

* DuckDB, the embedded default: one file, the frame is handed over as Arrow.
* PostgreSQL: ``raw.candles_m1`` is range-partitioned by month (partitions created on
  demand).

A load splits the batch, per pair, at the pair's newest stored bar (read under the
load lock, in the load's transaction): the rows after it cannot exist yet and go
straight into ``raw.candles_m1`` (PostgreSQL: one binary ``COPY``; DuckDB: one plain
``INSERT``), the common case of a backfill or ``follow``; the other rows take the
exact path (stage them, count how many exist and differ, then ``INSERT ... ON
CONFLICT DO UPDATE ... WHERE <values differ>``). Loading the same bars twice changes
nothing (not even ``ingested_at``); the counts are exact either way; a batch and
its per-pair watermarks commit in one transaction.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
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


def candles_to_arrow(
    df: pd.DataFrame | pa.Table, source: str | None = None
) -> pa.Table:
    """Normalise candles to the exact Arrow schema of ``raw.candles_m1``.

    ``df`` is a pandas frame or an Arrow table (e.g. the rows the OANDA parser
    makes). Prices may be floats (rounded to 6 decimals), decimal strings,
    ``Decimal`` objects or Arrow decimals; strings with more than 6 decimals raise
    instead of being rounded.

    Raises:
        WarehouseError: missing columns or duplicate (pair, bar_start) keys.
    """
    if isinstance(df, pa.Table):
        return _table_to_arrow(df, source)
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


CANDLE_SCHEMA = pa.schema(
    [("pair", pa.string()), ("bar_start", pa.timestamp("us", tz="UTC"))]
    + [(c, PRICE) for c in MID_COLUMNS]
    + [("volume", pa.int64())]
    + [(c, PRICE) for c in QUOTE_COLUMNS]
    + [("source", pa.string())]
)


def _table_to_arrow(table: pa.Table, source: str | None) -> pa.Table:
    missing = [
        c for c in ("pair", "bar_start", *MID_COLUMNS, "volume")
        if c not in table.column_names
    ]  # fmt: skip
    if missing:
        raise WarehouseError(f"candles table lacks columns {missing}")
    if source is None and "source" not in table.column_names:
        raise WarehouseError("candles need a source (argument or column)")
    n = table.num_rows
    arrays = []
    for f in CANDLE_SCHEMA:
        if f.name == "source" and source is not None:
            arrays.append(pa.array([source] * n, pa.string()))
        elif f.name in table.column_names:
            col = table.column(f.name)
            arrays.append(col if col.type == f.type else col.cast(f.type))
        else:
            arrays.append(pa.nulls(n, f.type))
    out = pa.Table.from_arrays(arrays, schema=CANDLE_SCHEMA)
    if n > 1:
        keys = (
            out.select(["pair", "bar_start"])
            .group_by(["pair", "bar_start"], use_threads=False)
            .aggregate([([], "count_all")])
        )
        if keys.num_rows < n:
            dup = keys.filter(pc.greater(keys.column("count_all"), 1))
            first = dup.slice(0, 1).to_pylist()[0]
            raise WarehouseError(
                f"batch has {int(pc.sum(dup.column('count_all')).as_py())} rows "
                f"with a repeated key, e.g. {first['pair']} {first['bar_start']}; "
                "deduplicate before loading"
            )
    return out


def split_new_rows(
    table: pa.Table, newest: dict[str, Any]
) -> tuple[pa.Table, pa.Table]:
    """``(rows after their pair's newest stored bar, the other rows)``.

    ``newest`` maps a pair to its newest stored ``bar_start`` (absent or None:
    nothing stored). The first part cannot collide with a stored row.
    """
    if table.num_rows == 0:
        return table, table
    cutoff_us = {
        p: (pd.Timestamp(t).tz_convert("UTC").value // 1000 if t is not None else None)
        for p, t in newest.items()
    }
    if all(v is None for v in cutoff_us.values()):
        return table, table.slice(0, 0)
    pairs = table.column("pair").combine_chunks().dictionary_encode()
    names = pairs.dictionary.to_pylist()
    floor = np.array(
        [
            cutoff_us.get(p) if cutoff_us.get(p) is not None else np.iinfo(np.int64).min
            for p in names
        ],
        dtype=np.int64,
    )
    ts = table.column("bar_start").to_numpy().astype("datetime64[us]").astype(np.int64)
    fresh = ts > floor[pairs.indices.to_numpy(zero_copy_only=False)]
    if fresh.all():
        return table, table.slice(0, 0)
    mask = pa.array(fresh)
    return table.filter(mask), table.filter(pc.invert(mask))


def _price_array(values: pd.Series) -> pa.Array:
    if (
        values.dtype == object
        and len(values)
        and isinstance(
            values.dropna().iloc[0] if values.notna().any() else None, Decimal
        )
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


def _newest_sql(n: int) -> str:
    """Newest stored bar of each of ``n`` pairs (one index probe per pair)."""
    probes = " union all ".join(
        "select ? as pair, (select max(bar_start) from raw.candles_m1 "
        "where pair = ?) as newest"
        for _ in range(n)
    )
    return probes


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


def _pairs_of(table: pa.Table) -> list[str]:
    return sorted(pc.unique(table.column("pair")).to_pylist())


def _months_of(table: pa.Table) -> list[pd.Timestamp]:
    """First instants (UTC, naive) of the months the batch's bars fall in."""
    if table.num_rows == 0:
        return []
    us = table.column("bar_start").to_numpy().astype("datetime64[us]")
    months = np.unique(us.astype("datetime64[M]"))
    return [pd.Timestamp(m) for m in months]


#: PostgreSQL binary COPY: signature, flags, header extension; end of data.
_PG_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_PG_TRAILER = struct.pack(">h", -1)
_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in UNIX microseconds
_TEXT_COLUMNS = ("pair", "source")


def _pg_copy(conn, target: str, table: pa.Table) -> None:
    """COPY ``table`` (the ``raw.candles_m1`` schema) into ``target``.

    Binary COPY built with numpy when every column is either full or empty (the
    empty ones are left out: NULL); CSV otherwise.
    """
    encoded = _pg_binary(table)
    with conn.cursor() as cur:
        if encoded is not None:
            cols, payload = encoded
            with cur.copy(
                f"copy {target} ({', '.join(cols)}) from stdin with (format binary)"
            ) as copy:
                copy.write(payload)
            return
        buf = io.BytesIO()
        pa_csv.write_csv(table, buf)
        with cur.copy(
            f"copy {target} ({', '.join(CANDLE_COLUMNS)}) from stdin "
            "with (format csv, header true)"
        ) as copy:
            copy.write(buf.getvalue())


def _decimal_units(col: pa.ChunkedArray) -> np.ndarray | None:
    """The unscaled int64 values of a ``decimal128(18, 6)`` column (None: too big)."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    words = np.frombuffer(
        arr.buffers()[1], dtype="<i8", count=2 * (arr.offset + len(arr))
    )[2 * arr.offset :]
    low, high = words[0::2], words[1::2]
    if not (high == (low >> 63)).all():
        return None
    return low


def _pg_binary(table: pa.Table) -> tuple[list[str], bytes] | None:
    """``(columns, payload)`` of a binary COPY of ``table``, or None (use CSV).

    numeric values are sent as 5 base-10000 digits (weight 2, dscale 6), which
    ``numeric_recv`` normalises; rows are grouped by the byte lengths of their
    text values so that each group is one fixed-layout numpy record array.
    """
    n = table.num_rows
    cols = [c for c in CANDLE_COLUMNS if table.column(c).null_count < n]
    if any(table.column(c).null_count for c in cols):
        return None
    values: dict[str, np.ndarray] = {}
    texts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for c in cols:
        col = table.column(c)
        if c in _TEXT_COLUMNS:
            enc = col.combine_chunks().dictionary_encode()
            words = [str(x).encode() for x in enc.dictionary.to_pylist()]
            idx = enc.indices.to_numpy(zero_copy_only=False)
            width = max(1, max(len(w) for w in words))
            texts[c] = (
                np.array(words, dtype=f"S{width}")[idx],
                np.array([len(w) for w in words], dtype=np.int64)[idx],
            )
        elif c == "bar_start":
            us = col.to_numpy().astype("datetime64[us]").astype(np.int64)
            values[c] = us - _PG_EPOCH_US
        elif c == "volume":
            values[c] = col.to_numpy()
        else:
            units = _decimal_units(col)
            if units is None:
                return None
            values[c] = units
    key = np.zeros(n, dtype=np.int64)
    for _, lengths in texts.values():
        if lengths.max(initial=0) >= 1 << 20:
            return None
        key = (key << 20) | lengths
    parts = [_PG_HEADER]
    for k in np.unique(key):
        rows = np.flatnonzero(key == k) if len(texts) else np.arange(n)
        lengths = {c: int(texts[c][1][rows[0]]) for c in texts}
        fields: list[tuple] = [("n", ">i2")]
        for c in cols:
            fields.append((c + "_len", ">i4"))
            if c in texts:
                fields.append((c, f"S{max(1, lengths[c])}"))
            elif c in ("bar_start", "volume"):
                fields.append((c, ">i8"))
            else:
                fields.append((c, ">i2", (9,)))  # ndigits weight sign dscale d0..d4
        rec = np.zeros(len(rows), dtype=np.dtype(fields))
        rec["n"] = len(cols)
        for c in cols:
            if c in texts:
                rec[c + "_len"] = lengths[c]
                rec[c] = texts[c][0][rows]
            elif c in ("bar_start", "volume"):
                rec[c + "_len"] = 8
                rec[c] = values[c][rows]
            else:
                rec[c + "_len"] = 18
                _numeric_digits(rec[c], values[c][rows])
        parts.append(rec.tobytes())
    parts.append(_PG_TRAILER)
    return cols, b"".join(parts)


def _numeric_digits(out: np.ndarray, units: np.ndarray) -> None:
    """Fill ``out`` (n x 9 int16) with PostgreSQL's binary numeric of ``units``/1e6."""
    out[:, 0] = 5  # ndigits
    out[:, 1] = 2  # weight: the first digit is x 10000^2
    out[:, 2] = np.where(units < 0, 0x4000, 0).astype(np.int16)  # sign
    out[:, 3] = 6  # dscale
    a = np.abs(units)
    whole, frac = a // 1_000_000, (a % 1_000_000) * 100
    out[:, 4] = whole // 100_000_000
    out[:, 5] = (whole // 10_000) % 10_000
    out[:, 6] = whole % 10_000
    out[:, 7] = frac // 10_000
    out[:, 8] = frac % 10_000


def attach_duckdb(settings: Settings, read_only: bool = False):
    """A DuckDB connection to the warehouse file, as dbt's profile opens it.

    The file is attached (as catalog ``warehouse``, the default one) with the
    settings' row-group size, as the ``duckdb`` profile of dbt_project attaches
    it: DuckDB does not store that size in the file, and a checkpoint by a
    writer with another size regroups every table's row groups to its own,
    rewriting the whole file (a 4-week warehouse went from 1.1 to 2.1 GB so).
    Small row groups are what keep a refresh's checkpoint small: the rows a
    refresh appends fill new groups instead of re-compressing a table's last
    122,880-row group (the default) at every checkpoint.
    """
    import duckdb

    con = duckdb.connect(
        config={
            "memory_limit": settings.duckdb_memory_limit,
            "threads": settings.duckdb_threads,
        }
    )
    path = str(settings.duckdb_path).replace("'", "''")
    options = (
        "READ_ONLY" if read_only else f"ROW_GROUP_SIZE {settings.duckdb_row_group_size}"
    )
    try:
        con.execute(f"attach '{path}' as warehouse ({options})")
        con.execute("use warehouse")
        con.execute("set TimeZone = 'UTC'")
    except Exception:
        con.close()
        raise
    return con


class DuckDBWarehouse(Warehouse):
    """The embedded warehouse: a DuckDB file."""

    kind = "duckdb"

    def __init__(self, settings: Settings, read_only: bool = False) -> None:
        import duckdb

        assert settings.duckdb_path is not None
        settings.duckdb_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.con = attach_duckdb(settings, read_only=read_only)
        except (duckdb.IOException, duckdb.ResourceInUseException) as exc:
            # another process holds the file, or this one has it open already
            raise WarehouseError(
                f"cannot open DuckDB warehouse {settings.duckdb_path}: {exc}"
            ) from exc
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
        cols = ", ".join(CANDLE_COLUMNS)
        registered = []
        con.execute("begin transaction")
        try:
            fresh, rest = table, table.slice(0, 0)
            pairs = _pairs_of(table)
            if pairs:
                marks = ", ".join("?" for _ in pairs)
                newest = dict(
                    con.execute(
                        "select pair, max(bar_start) from raw.candles_m1 "
                        f"where pair in ({marks}) group by pair",
                        pairs,
                    ).fetchall()
                )
                fresh, rest = split_new_rows(table, newest)
            existing = changed = 0
            if fresh.num_rows:  # cannot exist yet: a plain insert
                con.register("bqx_fresh", fresh)
                registered.append("bqx_fresh")
                con.execute(
                    f"insert into raw.candles_m1 ({cols}) select {cols} from bqx_fresh"
                )
            if rest.num_rows:  # may overlap: exact counts, then the upsert
                con.register("bqx_batch", rest)
                registered.append("bqx_batch")
                existing, changed = con.execute(_COUNT_SQL).fetchone()
                con.execute(_upsert_sql("raw.candles_m1", "bqx_batch"))
            for row in _watermark_rows(watermarks or {}):
                con.execute(_WATERMARK_SQL, row)
            con.execute("commit")
        except Exception:
            con.execute("rollback")
            raise
        finally:
            for name in registered:
                con.unregister(name)
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


CANDLES_CHANNEL = "bqx_candles"  # PostgreSQL NOTIFY channel of every load that stores bars


def listen_for_candles(settings: Settings):
    """A function ``wait(timeout) -> bool`` that returns as soon as a load stores
    or changes bars on the PostgreSQL warehouse (True), or after ``timeout``
    seconds (False). One dedicated connection, LISTENing on :data:`CANDLES_CHANNEL`;
    the notifications of one commit are consumed together.
    """
    import psycopg

    conn = psycopg.connect(settings.pg_dsn, autocommit=True, connect_timeout=5)
    conn.execute(f"listen {CANDLES_CHANNEL}")

    def wait(timeout: float) -> bool:
        got = False
        for _ in conn.notifies(timeout=timeout, stop_after=1):
            got = True
        if got:  # and any others already queued
            for _ in conn.notifies(timeout=0):
                pass
        return got

    wait.close = conn.close  # type: ignore[attr-defined]
    return wait


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
            # dbt's incremental models find each pair's new or changed bars
            # through this index (one walk per pair, not a scan of the history)
            conn.execute(
                "create index if not exists candles_m1_pair_ingested_at "
                "on raw.candles_m1 (pair, ingested_at)"
            )

        self.transaction(work)

    @staticmethod
    def _ensure_partitions(conn, months: Iterable[pd.Timestamp]) -> None:
        for month in sorted(set(months)):
            name = f"candles_m1_{month:%Y%m}"
            if conn.execute(
                "select to_regclass(%s) is not null", [f"raw.{name}"]
            ).fetchone()[0]:
                continue
            start = month.strftime("%Y-%m-01")
            end = (month + pd.offsets.MonthBegin(1)).strftime("%Y-%m-01")
            conn.execute(
                f"create table if not exists raw.candles_m1_{month:%Y%m} "
                f"partition of raw.candles_m1 for values from "
                f"('{start} 00:00:00+00') to ('{end} 00:00:00+00')"
            )

    def upsert_candles(self, df, source=None, watermarks=None) -> LoadResult:
        """See :meth:`Warehouse.upsert_candles`.

        Under the load lock, in one transaction: the newest stored bar of each
        pair of the batch (an index probe per pair); the rows after it are COPied
        (binary) straight into ``raw.candles_m1``; the others, if any, are COPied
        to a temporary table, counted against the stored rows and upserted.
        """
        import psycopg

        table = candles_to_arrow(df, source)
        if table.num_rows == 0 and not watermarks:
            return LoadResult(0, 0, 0)
        pairs = _pairs_of(table)
        months = _months_of(table)
        marks = _watermark_rows(watermarks or {})

        def work(conn) -> tuple[int, int]:
            conn.execute("select pg_advisory_xact_lock(hashtext('bqx.raw.ddl'))")
            self._ensure_partitions(conn, months)
            fresh, rest = table, table.slice(0, 0)
            if pairs:
                newest = dict(
                    conn.execute(
                        _newest_sql(len(pairs)).replace("?", "%s"),
                        [x for p in pairs for x in (p, p)],
                    ).fetchall()
                )
                fresh, rest = split_new_rows(table, newest)
            if fresh.num_rows:
                try:  # a savepoint: a row stored by a writer outside the lock
                    with conn.transaction():
                        _pg_copy(conn, "raw.candles_m1", fresh)
                except psycopg.errors.UniqueViolation:
                    rest = table  # everything takes the exact path
            existing = changed = 0
            if rest.num_rows:
                conn.execute(
                    "create temp table bqx_batch (like raw.candles_m1 including "
                    "defaults) on commit drop"
                )
                _pg_copy(conn, "bqx_batch", rest)
                with conn.cursor() as cur:
                    existing, changed = cur.execute(_COUNT_SQL).fetchone()
                    cur.execute(_upsert_sql("raw.candles_m1", "bqx_batch"))
            if fresh.num_rows or changed:
                # delivered at commit: `bqx features follow` wakes on it at once
                conn.execute("select pg_notify(%s, '')", [CANDLES_CHANNEL])
            if marks:
                conn.execute(
                    "insert into raw.ingest_watermarks as w "
                    "(pair, last_bar_start, updated_at) "
                    "select p, t, now() from unnest(%s::text[], %s::timestamptz[]) "
                    "as m(p, t) on conflict (pair) do update set last_bar_start = "
                    "greatest(w.last_bar_start, excluded.last_bar_start), "
                    "updated_at = now()",
                    ([p for p, _ in marks], [t.to_pydatetime() for _, t in marks]),
                )
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
