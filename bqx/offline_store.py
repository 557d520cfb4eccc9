"""bqx's Feast offline stores: a point-in-time join fast enough for years of M1 bars.

Feast's stock stores are two orders of magnitude too slow for minute bars (see the
Feast issue in the README). These stores keep Feast's API unchanged
(``store.get_historical_features(...)``) and plug in through ``feature_store.yaml``:

* :class:`BqxDuckDBOfflineStore` (``local`` and ``s3``): one DuckDB ``ASOF JOIN`` per
  feature view over the Parquet marts (local files, or S3 read through pyarrow),
  Arrow in and out.
* :class:`BqxPostgresOfflineStore` (``production``): one sort-merge pass per feature
  view (entity and feature rows sorted together per pair, a running ``max`` picks
  the last feature time at or before each entity row, then an equi-join on the
  unique (pair, event_timestamp) key); results stream back with COPY.

Semantics are Feast's: a feature row is joined to an entity row at ``t`` when its
event timestamp is ``<= t`` and, if the view has a TTL, ``>= t - ttl``; among rows
with the same event timestamp the newest ``created_timestamp`` wins; missing rows
give nulls; ``full_feature_names`` names columns ``view__feature``.
"""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable, List, Literal, Optional, Union

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
from feast import FeatureView
from feast.data_source import DataSource
from feast.infra.offline_stores.contrib.postgres_offline_store.postgres import (
    PostgreSQLOfflineStore,
    PostgreSQLOfflineStoreConfig,
)
from feast.infra.offline_stores.offline_store import OfflineStore, RetrievalJob
from feast.infra.offline_stores.offline_utils import (
    DEFAULT_ENTITY_DF_EVENT_TIMESTAMP_COL,
    infer_event_timestamp_from_entity_df,
)
from feast.infra.registry.base_registry import BaseRegistry
from feast.on_demand_feature_view import OnDemandFeatureView
from feast.repo_config import FeastConfigBaseModel, RepoConfig
from pydantic import StrictStr

ROW_ID = "__bqx_row"


class OfflineStoreError(ValueError):
    """A request the bqx offline store cannot serve, with the reason."""


@dataclass
class ViewPlan:
    """What to read from one feature view and how to name it."""

    view: FeatureView
    features: list[str]  # feature names requested, as in the view
    outputs: list[str]  # output column names
    source_columns: list[str]  # the same features as named in the source
    join_keys: list[tuple[str, str]]  # (entity df column, source column)
    timestamp: str
    created: str | None
    ttl_us: int  # TTL in microseconds; 0 = none


def _plan(
    feature_views: List[FeatureView],
    feature_refs: List[str],
    full_feature_names: bool,
    entity_columns: set[str],
) -> list[ViewPlan]:
    wanted: dict[str, list[str]] = {}
    for ref in feature_refs:
        view_name, feature = ref.split(":", 1)
        wanted.setdefault(view_name, []).append(feature)
    plans = []
    for fv in feature_views:
        name = fv.projection.name_to_use()
        features = wanted.get(name, [])
        if not features:
            continue
        source = fv.batch_source
        reverse = {v: k for k, v in (source.field_mapping or {}).items()}
        keys = []
        for col in fv.entity_columns:
            entity_col = fv.projection.join_key_map.get(col.name, col.name)
            if entity_col not in entity_columns:
                raise OfflineStoreError(
                    f"entity_df lacks the join key {entity_col!r} of view {name!r}"
                )
            keys.append((entity_col, reverse.get(col.name, col.name)))
        ttl = int(fv.ttl / timedelta(microseconds=1)) if fv.ttl else 0
        plans.append(
            ViewPlan(
                view=fv,
                features=features,
                outputs=[f"{name}__{f}" if full_feature_names else f for f in features],
                source_columns=[reverse.get(f, f) for f in features],
                join_keys=keys,
                timestamp=source.timestamp_field,
                created=source.created_timestamp_column or None,
                ttl_us=ttl,
            )
        )
    return plans


def _entity_arrow(entity_df: Union[pd.DataFrame, str]) -> tuple[pa.Table, str]:
    """The entity frame as Arrow with a row id and a UTC timestamp column."""
    if isinstance(entity_df, str):
        raise OfflineStoreError(
            "the bqx offline store takes entity_df as a pandas DataFrame, not SQL"
        )
    ts_col = infer_event_timestamp_from_entity_df(
        dict(zip(entity_df.columns, entity_df.dtypes))
    )
    frame = entity_df
    if frame[ts_col].dtype.kind != "M" or getattr(frame[ts_col].dt, "tz", None) is None:
        frame = frame.assign(**{ts_col: pd.to_datetime(frame[ts_col], utc=True)})
    table = pa.Table.from_pandas(frame, preserve_index=False)
    ts = table.column(ts_col).cast(pa.timestamp("us", tz="UTC"))
    table = table.set_column(table.schema.get_field_index(ts_col), ts_col, ts)
    return table.append_column(ROW_ID, pa.array(np.arange(table.num_rows))), ts_col


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class BqxRetrievalJob(RetrievalJob):
    """A retrieval whose result is computed by a function returning Arrow."""

    def __init__(
        self,
        compute: Callable[[], pa.Table],
        full_feature_names: bool = False,
        sql: str = "",
    ) -> None:
        self._compute = compute
        self._full_feature_names = full_feature_names
        self._sql = sql

    @property
    def full_feature_names(self) -> bool:
        return self._full_feature_names

    @property
    def on_demand_feature_views(self) -> List[OnDemandFeatureView]:
        return []

    def _to_arrow_internal(self, timeout: Optional[int] = None) -> pa.Table:
        return self._compute()

    def _to_df_internal(self, timeout: Optional[int] = None) -> pd.DataFrame:
        return self._compute().to_pandas()

    def to_sql(self) -> str:
        return self._sql

    def persist(self, storage, allow_overwrite: bool = False, timeout=None):
        raise NotImplementedError(
            "saved datasets: use bqx.features.save_training_set (Parquet + metadata)"
        )

    @property
    def metadata(self):
        return None


# --------------------------------------------------------------------------- DuckDB


class BqxDuckDBOfflineStoreConfig(FeastConfigBaseModel):
    """Config of :class:`BqxDuckDBOfflineStore` (``offline_store`` in the yaml)."""

    type: StrictStr = "bqx.offline_store.BqxDuckDBOfflineStore"
    memory_limit: StrictStr = "4GB"
    threads: int = 2
    s3_region: StrictStr = "us-east-1"


def _duckdb(config: RepoConfig):
    import duckdb

    store_cfg = config.offline_store
    con = duckdb.connect(
        config={"memory_limit": store_cfg.memory_limit, "threads": store_cfg.threads}
    )
    con.execute("set TimeZone = 'UTC'")
    return con


def _register_source(con, source: DataSource, alias: str, config: RepoConfig) -> None:
    """Make the source's Parquet readable as view ``alias`` (local path or S3)."""
    path = getattr(source, "path", None)
    if not path:
        raise OfflineStoreError(
            f"source {source.name!r} is not a file source; the bqx DuckDB store reads "
            "Parquet files"
        )
    if path.startswith("s3://"):
        import pyarrow.dataset as ds
        from pyarrow import fs

        endpoint = getattr(source, "s3_endpoint_override", None) or ""
        scheme = "http" if endpoint.startswith("http://") else "https"
        s3 = fs.S3FileSystem(
            endpoint_override=endpoint.split("://", 1)[-1] or None,
            scheme=scheme,
            region=config.offline_store.s3_region,
        )
        con.register(
            alias, ds.dataset(path[len("s3://") :], filesystem=s3, format="parquet")
        )
    else:
        escaped = path.replace("'", "''")
        con.execute(
            f"create or replace temp view {alias} as select * from read_parquet('{escaped}')"
        )


class BqxDuckDBOfflineStore(OfflineStore):
    """Point-in-time joins with DuckDB ``ASOF JOIN`` over Parquet marts."""

    supports_filter_by_created_timestamp = True

    @staticmethod
    def get_historical_features(
        config: RepoConfig,
        feature_views: List[FeatureView],
        feature_refs: List[str],
        entity_df: Union[pd.DataFrame, str],
        registry: BaseRegistry,
        project: str,
        full_feature_names: bool = False,
        **kwargs,
    ) -> RetrievalJob:
        entity, ts_col = _entity_arrow(entity_df)
        plans = _plan(
            feature_views, feature_refs, full_feature_names, set(entity.column_names)
        )
        queries = [_duckdb_view_sql(i, p, ts_col) for i, p in enumerate(plans)]
        sql = ";\n".join(queries)

        def compute() -> pa.Table:
            # One narrow ASOF JOIN per view, each ordered by the entity row id, then
            # the columns side by side: no wide intermediate rows to sort.
            con = _duckdb(config)
            try:
                keys = {ts_col, ROW_ID} | {k for p in plans for k, _ in p.join_keys}
                con.register(
                    "bqx_entity",
                    entity.select([c for c in entity.column_names if c in keys]),
                )
                out = entity.drop_columns([ROW_ID])
                for i, (plan, query) in enumerate(zip(plans, queries)):
                    _register_source(
                        con, plan.view.batch_source, f"bqx_src_{i}", config
                    )
                    part = con.sql(query).to_arrow_table()
                    for name in plan.outputs:
                        out = out.append_column(name, part.column(name))
                return out
            finally:
                con.close()

        return BqxRetrievalJob(compute, full_feature_names, sql)

    @staticmethod
    def pull_latest_from_table_or_query(
        config: RepoConfig,
        data_source: DataSource,
        join_key_columns: List[str],
        feature_name_columns: List[str],
        timestamp_field: str,
        created_timestamp_column: Optional[str],
        start_date: datetime,
        end_date: datetime,
    ) -> RetrievalJob:
        order = f"{_q(timestamp_field)} desc" + (
            f", {_q(created_timestamp_column)} desc" if created_timestamp_column else ""
        )
        return _duckdb_pull(
            config, data_source, join_key_columns, feature_name_columns,
            timestamp_field, created_timestamp_column, start_date, end_date,
            qualify=f"qualify row_number() over (partition by "
            f"{', '.join(map(_q, join_key_columns))} order by {order}) = 1",
        )  # fmt: skip

    @staticmethod
    def pull_all_from_table_or_query(
        config: RepoConfig,
        data_source: DataSource,
        join_key_columns: List[str],
        feature_name_columns: List[str],
        timestamp_field: str,
        created_timestamp_column: Optional[str] = None,
        start_date: Optional[datetime] = None,
        end_date: Optional[datetime] = None,
    ) -> RetrievalJob:
        return _duckdb_pull(
            config, data_source, join_key_columns, feature_name_columns,
            timestamp_field, created_timestamp_column, start_date, end_date, qualify="",
        )  # fmt: skip


def _duckdb_pull(
    config, source, keys, features, ts, created, start, end, qualify: str
) -> RetrievalJob:
    cols = [*keys, *features, ts] + ([created] if created else [])
    where = []
    if start is not None:
        where.append(f"{_q(ts)} >= '{pd.Timestamp(start).isoformat()}'::timestamptz")
    if end is not None:
        where.append(f"{_q(ts)} <= '{pd.Timestamp(end).isoformat()}'::timestamptz")
    sql = (
        f"select {', '.join(map(_q, dict.fromkeys(cols)))} from bqx_src"
        + (f" where {' and '.join(where)}" if where else "")
        + f" {qualify}"
    )

    def compute() -> pa.Table:
        con = _duckdb(config)
        try:
            _register_source(con, source, "bqx_src", config)
            return con.sql(sql).to_arrow_table()
        finally:
            con.close()

    return BqxRetrievalJob(compute, False, sql)


def _duckdb_view_sql(i: int, p: ViewPlan, ts_col: str) -> str:
    """The ASOF JOIN of one view: entity row id and the view's features, in order."""
    src = f"bqx_src_{i}"
    keys = ", ".join(f"{_q(s)} as k{j}" for j, (_, s) in enumerate(p.join_keys))
    feats = ", ".join(f"{_q(s)} as f{j}" for j, s in enumerate(p.source_columns))
    body = f"select {keys}, {_q(p.timestamp)} as ts, {feats} from {src}"
    if p.created:  # same event time: the newest created row wins
        body += (
            f" qualify row_number() over (partition by "
            f"{', '.join(f'k{j}' for j in range(len(p.join_keys)))}, ts "
            f"order by {_q(p.created)} desc) = 1"
        )
    cond = " and ".join(f"e.{_q(ec)} = v.k{j}" for j, (ec, _) in enumerate(p.join_keys))
    selects = []
    for j, out in enumerate(p.outputs):
        value = f"v.f{j}"
        if p.ttl_us:
            value = (
                f"case when v.ts >= e.{_q(ts_col)} - "
                f"interval {p.ttl_us} microsecond then {value} end"
            )
        selects.append(f"{value} as {_q(out)}")
    return (
        f"with v as ({body}) select {', '.join(selects)} from bqx_entity e "
        f"asof left join v on {cond} and e.{_q(ts_col)} >= v.ts order by e.{ROW_ID}"
    )


# ------------------------------------------------------------------------- Postgres


class BqxPostgresOfflineStoreConfig(PostgreSQLOfflineStoreConfig):
    """Config of :class:`BqxPostgresOfflineStore`: the stock Postgres fields."""

    type: Literal["bqx.offline_store.BqxPostgresOfflineStore"] = (  # type: ignore[assignment]
        "bqx.offline_store.BqxPostgresOfflineStore"
    )
    #: Views joined at the same time, each on its own connection (PostgreSQL runs
    #: one query on one core; the views are independent).
    parallelism: int = 4


def _pg_connect(config: RepoConfig):
    import psycopg

    c = config.offline_store
    return psycopg.connect(
        host=c.host, port=c.port, dbname=c.database, user=c.user,
        password=c.password or None, sslmode=c.sslmode or "prefer",
        sslrootcert=c.sslrootcert_path or None,  # the CA file of verify-full
        autocommit=True, connect_timeout=10,
    )  # fmt: skip


def _pg_source(source: DataSource) -> str:
    table = getattr(source, "get_table_query_string", None)
    if table is None:
        raise OfflineStoreError(f"source {source.name!r} is not a PostgreSQL source")
    return source.get_table_query_string()


_ARROW_TO_PG = {
    pa.string(): "text", pa.large_string(): "text", pa.int64(): "bigint",
    pa.int32(): "integer", pa.float64(): "double precision", pa.bool_(): "boolean",
}  # fmt: skip


def _pg_type(t: pa.DataType) -> str:
    if pa.types.is_timestamp(t):
        return "timestamptz"
    if t in _ARROW_TO_PG:
        return _ARROW_TO_PG[t]
    raise OfflineStoreError(f"entity_df column type {t} is not supported")


class BqxPostgresOfflineStore(PostgreSQLOfflineStore):
    """Point-in-time joins in PostgreSQL in one sort-merge pass per view.

    Materialization and the other methods are Feast's stock Postgres store.
    """

    @staticmethod
    def get_historical_features(
        config: RepoConfig,
        feature_views: List[FeatureView],
        feature_refs: List[str],
        entity_df: Union[pd.DataFrame, str],
        registry: BaseRegistry,
        project: str,
        full_feature_names: bool = False,
        **kwargs,
    ) -> RetrievalJob:
        entity, ts_col = _entity_arrow(entity_df)
        plans = _plan(
            feature_views, feature_refs, full_feature_names, set(entity.column_names)
        )
        # a plain UNLOGGED table, not a temp one: every view's query runs on its
        # own connection; dropped when the job is done
        schema = _q(config.offline_store.db_schema or "public")
        temp = f"{schema}.bqx_entity_{uuid.uuid4().hex[:12]}"
        queries = [_pg_view_sql(p, ts_col, temp) for p in plans]
        sql = ";\n".join(queries)
        workers = max(1, min(config.offline_store.parallelism, len(plans)))

        def join_view(plan: ViewPlan, query: str) -> pa.Table:
            data = io.BytesIO()
            with _pg_connect(config) as conn, conn.cursor() as cur:
                cur.execute("set timezone = 'UTC'")
                with cur.copy(
                    f"copy ({query}) to stdout with (format csv, header true)"
                ) as copy:
                    for chunk in copy:
                        data.write(chunk)
            types = {
                o: _feast_arrow_type(
                    next(f for f in plan.view.features if f.name == n).dtype
                )
                for o, n in zip(plan.outputs, plan.features)
            }
            return _read_pg_csv(data.getvalue(), types)

        def compute() -> pa.Table:
            from concurrent.futures import ThreadPoolExecutor

            buf = io.BytesIO()
            pa_csv.write_csv(entity, buf)
            cols = ", ".join(f"{_q(f.name)} {_pg_type(f.type)}" for f in entity.schema)
            out = entity.drop_columns([ROW_ID])
            with _pg_connect(config) as conn, conn.cursor() as cur:
                cur.execute("set timezone = 'UTC'")
                cur.execute(f"create unlogged table {temp} ({cols})")
                try:
                    with cur.copy(
                        f"copy {temp} from stdin with (format csv, header true)"
                    ) as copy:
                        copy.write(buf.getvalue())
                    cur.execute(f"analyze {temp}")
                    # views run concurrently; their columns join in plan order
                    with ThreadPoolExecutor(workers, "bqx-pit") as pool:
                        parts = list(pool.map(join_view, plans, queries))
                finally:
                    cur.execute(f"drop table if exists {temp}")
            for plan, part in zip(plans, parts):
                for name in plan.outputs:
                    out = out.append_column(name, part.column(name))
            return out

        return BqxRetrievalJob(compute, full_feature_names, sql)


def _feast_arrow_type(dtype) -> pa.DataType:
    from feast.types import Bool, Float32, Float64, Int32, Int64, String, UnixTimestamp

    mapping = {
        Float64: pa.float64(), Float32: pa.float32(), Int64: pa.int64(),
        Int32: pa.int32(), Bool: pa.bool_(), String: pa.string(),
        UnixTimestamp: pa.timestamp("us", tz="UTC"),
    }  # fmt: skip
    return mapping.get(dtype, pa.string())


def _read_pg_csv(data: bytes, types: dict[str, pa.DataType]) -> pa.Table:
    """Parse COPY ... TO STDOUT CSV with the expected column types."""
    read_types = {
        c: (pa.string() if pa.types.is_timestamp(t) or pa.types.is_boolean(t) else t)
        for c, t in types.items()
    }
    table = pa_csv.read_csv(
        io.BytesIO(data),
        convert_options=pa_csv.ConvertOptions(
            column_types=read_types, strings_can_be_null=True, null_values=[""]
        ),
    )
    for name, t in types.items():
        col = table.column(name)
        if pa.types.is_timestamp(t):
            col = pa.array(
                pd.to_datetime(col.to_pandas(), utc=True), pa.timestamp("us", tz="UTC")
            )
        elif pa.types.is_boolean(t):
            col = pa.array(col.to_pandas().map({"t": True, "f": False}), pa.bool_())
        else:
            continue
        table = table.set_column(table.schema.get_field_index(name), name, col)
    return table


def _pg_view_sql(p: ViewPlan, ts_col: str, temp: str) -> str:
    """One view's point-in-time join in one sort-merge pass (rows in entity order).

    The entity rows and the view's rows (only the entity keys and time range) are
    sorted together per key by time, feature rows first on ties; a running ``max``
    gives each entity row the time of the last feature row at or before it; that
    row is joined back on (keys, time). TTL and created-timestamp tie-break as
    Feast's stores do.
    """
    ets = _q(ts_col)
    src, ts = _pg_source(p.view.batch_source), _q(p.timestamp)
    ks = [f"k{j}" for j in range(len(p.join_keys))]
    ecols = [_q(ec) for ec, _ in p.join_keys]
    scols = [f"m.{_q(s)}" for _, s in p.join_keys]
    where = [
        f"({', '.join(scols)}) in (select distinct {', '.join(ecols)} from {temp})",
        f"m.{ts} <= (select max({ets}) from {temp})",
    ]
    if p.ttl_us:
        where.append(
            f"m.{ts} >= (select min({ets}) from {temp}) - "
            f"interval '{p.ttl_us} microseconds'"
        )
    as_k = ", ".join(f"{c} as {k}" for c, k in zip(scols, ks))
    feats = ", ".join(f"m.{_q(s)} as f{j}" for j, s in enumerate(p.source_columns))
    rows = (
        f"select {as_k}, m.{ts} as ts, {feats} from {src} m where {' and '.join(where)}"
    )
    if p.created:  # same event time: the newest created row wins
        rows = (
            f"select distinct on ({', '.join(scols)}, m.{ts}) {rows[len('select ') :]} "
            f"order by {', '.join(scols)}, m.{ts}, m.{_q(p.created)} desc"
        )
    both = (
        f"select {', '.join(f'e.{c} as {k}' for c, k in zip(ecols, ks))}, "
        f"e.{ets} as ts, e.{ROW_ID} as rid, 1 as side from {temp} e "
        f"union all select {', '.join(ks)}, ts, null, 0 from s"
    )
    merged = (
        f"select {', '.join(ks)}, ts, rid, max(case when side = 0 then ts end) over "
        f"(partition by {', '.join(ks)} order by ts, side rows between unbounded "
        f"preceding and current row) as mts from ({both}) u"
    )
    values = []
    for j, out in enumerate(p.outputs):
        value = f"s.f{j}"
        if p.ttl_us:
            value = (
                f"case when w.mts >= w.ts - interval '{p.ttl_us} microseconds' "
                f"then {value} end"
            )
        values.append(f"{value} as {_q(out)}")
    on = " and ".join(f"s.{k} = w.{k}" for k in ks)
    return (
        f"with s as materialized ({rows}), "
        f"w as (select * from ({merged}) x where rid is not null) "
        f"select {', '.join(values)} from w left join s on {on} and s.ts = w.mts "
        f"order by w.rid"
    )


__all__ = [
    "BqxDuckDBOfflineStore",
    "BqxDuckDBOfflineStoreConfig",
    "BqxPostgresOfflineStore",
    "BqxPostgresOfflineStoreConfig",
    "DEFAULT_ENTITY_DF_EVENT_TIMESTAMP_COL",
]
