"""Gap detection and repair for ``raw.candles_m1``.

A gap is a run of minutes inside a trading session (Sunday 17:00 to Friday 17:00
New York time, so DST-aware in UTC) with no stored bar. Quiet minutes and holidays
have no candle at OANDA either, so :func:`repair_gaps` asks the API for each gap
range, loads what it returns and records the minutes it confirms empty in
``raw.candle_gaps_confirmed``; :func:`find_gaps` leaves those out, so they are never
asked again.

A missing minute whose candle OANDA did send but that was quarantined
(``raw.candles_rejected``) is not "missing": :func:`find_gaps` lists it with status
``quarantined`` and the reject reason. :func:`repair_gaps` asks the API for it once
more (the answer may have been a transient fault); if the candle comes back valid
it is loaded, if it comes back malformed again the minute is recorded in
``raw.candle_gaps_confirmed`` with that reason (``rechecked``) and never asked again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from bqx.warehouse import Warehouse
from ingestion.m5 import ensure_m5_schema, refresh_m5
from ingestion.oanda.client import OandaClient
from ingestion.oanda.parse import parse_candles
from ingestion.oanda.timefmt import format_unix, parse_time
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
    reason text,
    primary key (pair, gap_start)
)"""
#: Tables created before quarantined minutes were recorded lack ``reason``.
DDL_REASON = (
    "alter table raw.candle_gaps_confirmed add column if not exists reason text"
)
MISSING, QUARANTINED = "missing", "quarantined"
LENGTHS = [(1, 1, "1 min"), (2, 5, "2-5 min"), (6, 30, "6-30 min"),
           (31, 120, "31-120 min"), (121, 10**9, "> 2 h")]  # fmt: skip


@dataclass(frozen=True)
class Gap:
    """Missing minutes ``[start, end)`` of ``pair``.

    ``status`` is ``missing`` (no candle stored or quarantined) or ``quarantined``
    (OANDA sent a malformed candle: ``reason``); ``rechecked`` quarantined minutes
    were asked again by a repair, came back malformed and are not asked again.
    """

    pair: str
    start: pd.Timestamp
    end: pd.Timestamp
    status: str = MISSING
    reason: str | None = None
    rechecked: bool = False

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
    quarantined_minutes: int = 0
    skipped: int = 0


def ensure_gaps_schema(wh: Warehouse) -> None:
    """Create ``raw.candle_gaps_confirmed`` if missing (with its ``reason``)."""
    wh.execute(DDL)
    wh.execute(DDL_REASON)


def find_gaps(
    wh: Warehouse, pairs: list[str], since: Any = None, until: Any = None
) -> list[Gap]:
    """Missing in-session minutes per pair, without the ranges confirmed empty.

    The range per pair is ``[since or first stored bar, until or watermark + 1 min)``.
    Minutes whose candle was quarantined come as ``quarantined`` gaps (runs of
    minutes with the same reason), after the ``missing`` ones of their pair.
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
        confirmed = _confirmed(wh, pair)
        missing = missing[~_within(missing, confirmed[confirmed["reason"].isna()])]
        rechecked = confirmed[confirmed["reason"].notna()]
        bad = _rejected_minutes(wh, pair)
        for row in rechecked.itertuples(index=False):
            for m in pd.date_range(
                _utc(row.gap_start), _utc(row.gap_end), inclusive="left", freq="min"
            ):
                bad[m] = row.reason
        held = missing.isin(list(bad))
        gaps.extend(_runs(pair, missing[~held]))
        quarantined = missing[held]
        gaps.extend(
            _runs(
                pair,
                quarantined,
                status=QUARANTINED,
                reasons=[bad[m] for m in quarantined],
                rechecked=_within(quarantined, rechecked),
            )
        )
    return gaps


def gap_report(gaps: list[Gap]) -> pd.DataFrame:
    """Gap counts and minutes by pair, status (missing/quarantined) and length."""
    rows = []
    for g in gaps:
        label = next(name for a, b, name in LENGTHS if a <= g.minutes <= b)
        rows.append((g.pair, g.status, label, g.minutes))
    df = pd.DataFrame(rows, columns=["pair", "status", "length", "minutes"])
    if df.empty:
        return pd.DataFrame(columns=["pair", "status", "length", "gaps", "minutes"])
    order = {name: i for i, (_, _, name) in enumerate(LENGTHS)}
    out = df.groupby(["pair", "status", "length"], as_index=False).agg(
        gaps=("minutes", "size"), minutes=("minutes", "sum")
    )
    out["rank"] = out["length"].map(order)
    out = out.sort_values(["pair", "status", "rank"], ignore_index=True)
    return out.drop(columns="rank")


def repair_gaps(
    wh: Warehouse, client: OandaClient, gaps: list[Gap], price: str = "M"
) -> RepairResult:
    """Ask the API for each gap, load what comes back, confirm the rest empty.

    Quarantined minutes already ``rechecked`` are skipped (counted in
    ``skipped``); the others are asked once more: a valid candle is loaded, a
    malformed one is quarantined and its minute recorded as rechecked.
    """
    ensure_gaps_schema(wh)
    ensure_m5_schema(wh)
    result = RepairResult(gaps=len(gaps))
    source = f"oanda:{price}"
    touched: dict[str, pd.Timestamp] = {}
    for gap in gaps:
        if gap.status == QUARANTINED and gap.rechecked:
            result.skipped += 1
            continue
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
            ts = page.rows.column("bar_start")
            inside = pc.and_(
                pc.greater_equal(ts, _scalar(start)), pc.less(ts, _scalar(end))
            )
            rows = page.rows.filter(inside)
            if len(page.rejects):
                result.rejected += wh.quarantine(page.rejects)
            if rows.num_rows:
                wh.upsert_candles(rows, source=source)
                result.filled += rows.num_rows
                touched[gap.pair] = min(start, touched.get(gap.pair, start))
            stored = set(rows.column("bar_start").to_pandas())
            bad = {
                m: why
                for m, why in _reject_minutes(page.rejects).items()
                if start <= m < end and m not in stored
            }
            minutes = trading_minutes(start, end)
            empty = minutes[~minutes.isin(list(stored) + list(bad))]
            runs = _runs(gap.pair, empty)
            held = pd.DatetimeIndex(sorted(bad))
            runs += _runs(gap.pair, held, QUARANTINED, [bad[m] for m in held], None)
            for run in runs:
                wh.execute(
                    "insert into raw.candle_gaps_confirmed "
                    "(pair, gap_start, gap_end, minutes, source, reason) "
                    "values (?, ?, ?, ?, ?, ?) "
                    "on conflict (pair, gap_start) do nothing",
                    [
                        run.pair,
                        run.start.to_pydatetime(),
                        run.end.to_pydatetime(),
                        run.minutes,
                        source,
                        run.reason,
                    ],
                )
                if run.status == QUARANTINED:
                    result.quarantined_minutes += run.minutes
                else:
                    result.confirmed_minutes += run.minutes
            start = end
    for pair, since in touched.items():
        if _has_m5(wh, pair):
            refresh_m5(wh, [pair], since=since)
    return result


def _scalar(t: pd.Timestamp) -> pa.Scalar:
    return pa.scalar(t.value // 1000, pa.timestamp("us", tz="UTC"))


def _reject_minutes(rejects: pd.DataFrame) -> dict[pd.Timestamp, str]:
    """``{minute: reason}`` of quarantine rows keyed ``PAIR:<time>``."""
    out: dict[pd.Timestamp, str] = {}
    if rejects.empty:
        return out
    for ref, why in zip(rejects["record_ref"], rejects["reason"]):
        _, _, stamp = str(ref).partition(":")
        try:
            t = pd.Timestamp(parse_time(stamp), unit="ns", tz="UTC").floor("min")
        except ValueError:
            continue  # no time (e.g. ``PAIR:#3:...``): not a minute
        out[t] = str(why)
    return out


def _rejected_minutes(wh: Warehouse, pair: str) -> dict[pd.Timestamp, str]:
    """``{minute: reason}`` of the OANDA candles of ``pair`` in quarantine."""
    df = wh.query_df(
        "select record_ref, reason from raw.candles_rejected "
        "where pair = ? and source like ? order by rejected_at",
        [pair, "oanda:%"],
    )
    return _reject_minutes(df)


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


def _confirmed(wh: Warehouse, pair: str) -> pd.DataFrame:
    return wh.query_df(
        "select gap_start, gap_end, reason from raw.candle_gaps_confirmed "
        "where pair = ?",
        [pair],
    )


def _within(minutes: pd.DatetimeIndex, ranges: pd.DataFrame) -> np.ndarray:
    """Which ``minutes`` lie in one of the ``[gap_start, gap_end)`` ``ranges``."""
    mask = np.zeros(len(minutes), dtype=bool)
    for row in ranges.itertuples(index=False):
        mask |= (minutes >= _utc(row.gap_start)) & (minutes < _utc(row.gap_end))
    return mask


def _runs(
    pair: str,
    minutes: pd.DatetimeIndex,
    status: str = MISSING,
    reasons: list[str] | None = None,
    rechecked: Any = None,
) -> list[Gap]:
    """Consecutive minutes (with the same reason and recheck state) as gaps."""
    if len(minutes) == 0:
        return []
    order = np.argsort(minutes.asi8, kind="stable")
    values = minutes[order]
    why = [reasons[i] for i in order] if reasons is not None else [None] * len(values)
    done = (
        np.asarray(rechecked, dtype=bool)[order]
        if rechecked is not None
        else np.zeros(len(values), dtype=bool)
    )
    breaks = [
        i
        for i in range(1, len(values))
        if values[i] - values[i - 1] != MINUTE
        or why[i] != why[i - 1]
        or done[i] != done[i - 1]
    ]
    out = []
    for chunk in np.split(np.arange(len(values)), breaks):
        a, b = chunk[0], chunk[-1]
        out.append(
            Gap(pair, values[a], values[b] + MINUTE, status, why[a], bool(done[a]))
        )
    return out
