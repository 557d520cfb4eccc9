"""Gap detection and repair for ``raw.candles_m1``.

A gap is a run of minutes inside a trading session (Sunday 17:00 to Friday 17:00
New York time, so DST-aware in UTC) with no stored bar. Quiet minutes and holidays
have no candle at OANDA either, so :func:`repair_gaps` asks the API for each gap
range, loads what it returns and records the minutes it confirms empty in
``raw.candle_gaps_confirmed``; :func:`find_gaps` leaves those out, so they are never
asked again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bqx.warehouse import Warehouse
from ingestion.m5 import ensure_m5_schema, refresh_m5
from ingestion.oanda.client import OandaClient
from ingestion.oanda.parse import parse_candles
from ingestion.oanda.timefmt import format_unix
from ingestion.simulator import trading_minutes

MINUTE = pd.Timedelta(minutes=1)
MAX_MINUTES = 5000
DDL = """
create schema if not exists raw;
create table if not exists raw.candle_gaps_confirmed (
    pair text not null,
    gap_start timestamptz not null,
    gap_end timestamptz not null,
    minutes integer not null,
    source text not null,
    confirmed_at timestamptz not null default now(),
    primary key (pair, gap_start)
)"""
LENGTHS = [(1, 1, "1 min"), (2, 5, "2-5 min"), (6, 30, "6-30 min"),
           (31, 120, "31-120 min"), (121, 10**9, "> 2 h")]  # fmt: skip


@dataclass(frozen=True)
class Gap:
    """Missing minutes ``[start, end)`` of ``pair``."""

    pair: str
    start: pd.Timestamp
    end: pd.Timestamp

    @property
    def minutes(self) -> int:
        return int((self.end - self.start) / MINUTE)


@dataclass
class RepairResult:
    """What :func:`repair_gaps` did."""

    gaps: int = 0
    filled: int = 0
    confirmed_minutes: int = 0
    rejected: int = 0
    requests: int = 0


def ensure_gaps_schema(wh: Warehouse) -> None:
    """Create ``raw.candle_gaps_confirmed`` if missing."""
    wh.execute(DDL)


def find_gaps(
    wh: Warehouse, pairs: list[str], since: Any = None, until: Any = None
) -> list[Gap]:
    """Missing in-session minutes per pair, without the ranges confirmed empty.

    The range per pair is ``[since or first stored bar, until or watermark + 1 min)``.
    """
    ensure_gaps_schema(wh)
    gaps: list[Gap] = []
    for pair in pairs:
        stored = _stored_minutes(wh, pair)
        if len(stored) == 0:
            continue
        lo = _utc(since) if since is not None else stored[0]
        hi = _utc(until) if until is not None else _end(wh, pair, stored)
        expected = trading_minutes(lo, hi)
        missing = expected[~expected.isin(stored)]
        missing = missing[~_confirmed_mask(wh, pair, missing)]
        gaps.extend(_runs(pair, missing))
    return gaps


def gap_report(gaps: list[Gap]) -> pd.DataFrame:
    """Gap counts and missing minutes by pair and length class."""
    rows = []
    for g in gaps:
        label = next(name for a, b, name in LENGTHS if a <= g.minutes <= b)
        rows.append((g.pair, label, g.minutes))
    df = pd.DataFrame(rows, columns=["pair", "length", "minutes"])
    if df.empty:
        return pd.DataFrame(columns=["pair", "length", "gaps", "minutes"])
    order = {name: i for i, (_, _, name) in enumerate(LENGTHS)}
    out = df.groupby(["pair", "length"], as_index=False).agg(
        gaps=("minutes", "size"), minutes=("minutes", "sum")
    )
    out["rank"] = out["length"].map(order)
    out = out.sort_values(["pair", "rank"], ignore_index=True)
    return out.drop(columns="rank")


def repair_gaps(
    wh: Warehouse, client: OandaClient, gaps: list[Gap], price: str = "M"
) -> RepairResult:
    """Ask the API for each gap, load what comes back, confirm the rest empty."""
    ensure_gaps_schema(wh)
    ensure_m5_schema(wh)
    result = RepairResult(gaps=len(gaps))
    source = f"oanda:{price}"
    touched: dict[str, pd.Timestamp] = {}
    for gap in gaps:
        start = gap.start
        while start < gap.end:
            end = min(gap.end, start + MAX_MINUTES * MINUTE)
            params = {
                "granularity": "M1",
                "price": price,
                "from": format_unix(start.value),
                "to": format_unix(end.value),
            }
            what = f"{gap.pair} M1 {start:%Y-%m-%dT%H:%M}Z..{end:%Y-%m-%dT%H:%M}Z"
            body = client.candles(gap.pair, params, what)
            result.requests += 1
            page = parse_candles(body, gap.pair, price, source)
            rows = page.rows[
                (page.rows["bar_start"] >= start) & (page.rows["bar_start"] < end)
            ]
            if len(page.rejects):
                result.rejected += wh.quarantine(page.rejects)
            if len(rows):
                wh.upsert_candles(rows, source=source)
                result.filled += len(rows)
                touched[gap.pair] = min(start, touched.get(gap.pair, start))
            seen = set(rows["bar_start"]) | _reject_times(page.rejects)
            empty = [m for m in trading_minutes(start, end) if m not in seen]
            for run in _runs(gap.pair, pd.DatetimeIndex(empty)):
                wh.execute(
                    "insert into raw.candle_gaps_confirmed "
                    "(pair, gap_start, gap_end, minutes, source) "
                    "values (?, ?, ?, ?, ?) "
                    "on conflict (pair, gap_start) do nothing",
                    [
                        run.pair,
                        run.start.to_pydatetime(),
                        run.end.to_pydatetime(),
                        run.minutes,
                        source,
                    ],
                )
                result.confirmed_minutes += run.minutes
            start = end
    for pair, since in touched.items():
        if _has_m5(wh, pair):
            refresh_m5(wh, [pair], since=since)
    return result


def _reject_times(rejects: pd.DataFrame) -> set[pd.Timestamp]:
    out = set()
    for ref in rejects.get("record_ref", []):
        try:
            out.add(pd.Timestamp(ref.split(":", 1)[1]).floor("min"))
        except ValueError:
            continue
    return out


def _has_m5(wh: Warehouse, pair: str) -> bool:
    df = wh.query_df("select count(*) as n from raw.candles_m5 where pair = ?", [pair])
    return int(df["n"][0]) > 0


def _utc(value: Any) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _stored_minutes(wh: Warehouse, pair: str) -> pd.DatetimeIndex:
    df = wh.query_df(
        "select bar_start from raw.candles_m1 where pair = ? order by bar_start", [pair]
    )
    return pd.DatetimeIndex(pd.to_datetime(df["bar_start"], utc=True))


def _end(wh: Warehouse, pair: str, stored: pd.DatetimeIndex) -> pd.Timestamp:
    df = wh.query_df(
        "select last_bar_start from raw.ingest_watermarks where pair = ?", [pair]
    )
    last = stored[-1]
    if len(df) and df["last_bar_start"][0] is not None:
        last = max(last, _utc(df["last_bar_start"][0]))
    return last + MINUTE


def _confirmed_mask(wh: Warehouse, pair: str, minutes: pd.DatetimeIndex) -> np.ndarray:
    df = wh.query_df(
        "select gap_start, gap_end from raw.candle_gaps_confirmed where pair = ?",
        [pair],
    )
    mask = np.zeros(len(minutes), dtype=bool)
    for row in df.itertuples(index=False):
        mask |= (minutes >= _utc(row.gap_start)) & (minutes < _utc(row.gap_end))
    return mask


def _runs(pair: str, minutes: pd.DatetimeIndex) -> list[Gap]:
    """Consecutive minutes grouped into gaps."""
    if len(minutes) == 0:
        return []
    values = minutes.sort_values()
    breaks = np.flatnonzero(np.diff(values.asi8) != MINUTE.value) + 1
    out = []
    for chunk in np.split(np.arange(len(values)), breaks):
        out.append(Gap(pair, values[chunk[0]], values[chunk[-1]] + MINUTE))
    return out
