"""``raw.candles_m5``: 5-minute bars built from ``raw.candles_m1`` in the warehouse.

Buckets are aligned on UTC multiples of 5 minutes. A bucket is ``complete`` once the
pair's watermark has reached its last minute. :func:`refresh_m5` recomputes, per
pair, every bucket from the newest one already stored (or from ``since``), so it
is idempotent and catches up after any crash.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from bqx.warehouse import Warehouse

DDL = """
create schema if not exists raw;
create table if not exists raw.candles_m5 (
    pair text not null,
    bar_start timestamptz not null,
    open decimal(18, 6) not null,
    high decimal(18, 6) not null,
    low decimal(18, 6) not null,
    close decimal(18, 6) not null,
    volume bigint not null,
    bars integer not null,
    complete boolean not null,
    updated_at timestamptz not null default now(),
    primary key (pair, bar_start)
)"""
_FIRST_LAST = {
    "duckdb": ("arg_min(c.open, c.bar_start)", "arg_max(c.close, c.bar_start)"),
    "postgres": (
        "(array_agg(c.open order by c.bar_start))[1]",
        "(array_agg(c.close order by c.bar_start desc))[1]",
    ),
}
_VALUES = ("open", "high", "low", "close", "volume", "bars", "complete")


def ensure_m5_schema(wh: Warehouse) -> None:
    """Create ``raw.candles_m5`` if missing."""
    wh.execute(DDL)


def _refresh_sql(kind: str) -> str:
    first, last = _FIRST_LAST[kind]
    bucket = "to_timestamp(floor(extract(epoch from c.bar_start) / 300) * 300)"
    sets = ", ".join(f"{v} = excluded.{v}" for v in _VALUES)
    old = ", ".join(f"m.{v}" for v in _VALUES)
    new = ", ".join(f"excluded.{v}" for v in _VALUES)
    return f"""
    insert into raw.candles_m5 as m
        (pair, bar_start, open, high, low, close, volume, bars, complete)
    select
        b.pair, b.bucket, b.open, b.high, b.low, b.close, b.volume, b.bars,
        coalesce(w.last_bar_start >= b.bucket + interval '4 minutes', false)
    from (
        select
            c.pair,
            {bucket} as bucket,
            {first} as open,
            max(c.high) as high,
            min(c.low) as low,
            {last} as close,
            sum(c.volume) as volume,
            count(*) as bars
        from raw.candles_m1 as c
        where c.pair = ? and c.bar_start >= ?
        group by c.pair, {bucket}
    ) as b
    left join raw.ingest_watermarks as w on w.pair = b.pair
    on conflict (pair, bar_start) do update set {sets}, updated_at = now()
    where ({old}) is distinct from ({new})
    """


def refresh_m5(wh: Warehouse, pairs: list[str], since: Any | None = None) -> None:
    """Rebuild the 5-minute buckets of ``pairs`` from the newest stored one on.

    One statement for all ``pairs``, from the oldest of their newest buckets.

    Args:
        wh: the warehouse.
        pairs: pairs to refresh.
        since: rebuild from this time instead (e.g. after a gap repair).
    """
    if not pairs:
        return
    start = pd.Timestamp(since) if since is not None else _last_bucket(wh, pairs)
    start = start.tz_localize("UTC") if start.tzinfo is None else start
    start = start.tz_convert("UTC").floor("5min")
    marks = ", ".join("?" for _ in pairs)
    sql = _refresh_sql(wh.kind).replace("c.pair = ?", f"c.pair in ({marks})")
    wh.execute(sql, [*pairs, start.to_pydatetime()])


def _last_bucket(wh: Warehouse, pairs: list[str]) -> pd.Timestamp:
    """The oldest of the pairs' newest buckets (the epoch if one has none)."""
    marks = ", ".join("?" for _ in pairs)
    df = wh.query_df(
        "select pair, max(bar_start) as t from raw.candles_m5 "
        f"where pair in ({marks}) group by pair",
        list(pairs),
    )
    if len(df) < len(set(pairs)) or df["t"].isna().any():
        return pd.Timestamp("1970-01-01", tz="UTC")
    return pd.Timestamp(min(pd.Timestamp(t) for t in df["t"]))
