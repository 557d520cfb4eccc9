"""Turn a candles answer into rows to load and rejects to quarantine.

Prices stay decimal strings end to end (never float text). A candle is rejected,
with a reason, when a field is missing, a price is not a number, high < low or the
open/close lie outside [low, high], its time is not on a whole minute (M1), or the
body names another instrument. ``complete: false`` candles are kept apart: they are
never stored as final.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ingestion.oanda.timefmt import NS, format_rfc3339, parse_time

COMPONENTS = {"M": ("mid", ""), "B": ("bid", "bid_"), "A": ("ask", "ask_")}
OHLC = {"o": "open", "h": "high", "l": "low", "c": "close"}
REJECT_COLUMNS = ["source", "record_ref", "pair", "raw_record", "reason"]


@dataclass
class Page:
    """One parsed page of candles.

    Attributes:
        pair: the instrument asked for.
        rows: complete, valid candles (``pair, bar_start``, decimal-string prices,
            ``volume``, bid/ask/spread columns when asked), unique and sorted.
        rejects: quarantine rows (``source, record_ref, pair, raw_record, reason``).
        forming: the ``complete: false`` candle (raw dict), if any.
        last_ns: latest time of any complete candle received (valid or not), the
            ``from`` of the next page; None when the page had none.
        received: distinct candle times in the answer (forming included).
    """

    pair: str
    rows: pd.DataFrame
    rejects: pd.DataFrame
    forming: dict | None = None
    last_ns: int | None = None
    received: int = 0
    complete_times: list[int] = field(default_factory=list)
    stats: dict = field(default_factory=dict)


def parse_candles(
    body: dict, pair: str, price: str, source: str, step_s: int = 60
) -> Page:
    """Validate the candles of ``body`` (a candles answer for ``pair``)."""
    candles = body.get("candles")
    if not isinstance(candles, list):
        raise ValueError(f"{pair}: answer has no 'candles' list")
    times = _times_ns(candles)
    received = len({t for t in times if t is not None})
    good_times = [
        t
        for t, c in zip(times, candles)
        if t is not None and isinstance(c, dict) and c.get("complete") is not False
    ]
    last_ns = max(good_times) if good_times else None
    reasons: list[str | None]
    if body.get("instrument") != pair:
        bad = f"instrument {body.get('instrument')!r} in the body, {pair!r} asked for"
        reasons = [bad] * len(candles)
    else:
        reasons = _problems(candles, times, price, step_s)
    forming = None
    keep: list[int] = []
    rejects = []
    for i, (c, t, why) in enumerate(zip(candles, times, reasons)):
        if why is None and c.get("complete") is False:
            forming = c
        elif why is None:
            keep.append(i)
        else:
            ref = (
                f"{pair}:{format_rfc3339(t)}"
                if t is not None
                else f"{pair}:#{i}:{json.dumps(c, sort_keys=True)[:120]}"
            )
            rejects.append((source, ref, pair, json.dumps(c, sort_keys=True), why))
    kept_times = [t for i in keep if (t := times[i]) is not None]
    rows = _rows([candles[i] for i in keep], kept_times, pair, price)
    rej = pd.DataFrame(rejects, columns=REJECT_COLUMNS).drop_duplicates("record_ref")
    return Page(pair, rows, rej, forming, last_ns, received, sorted(set(good_times)))


def _times_ns(candles: list) -> list[int | None]:
    """Candle times in UNIX ns; vectorised for whole-second UNIX strings."""
    try:
        secs = np.array([c["time"] for c in candles], dtype=float)
        whole = np.round(secs)
        if len(secs) and (whole == secs).all() and (np.abs(secs) < 1e11).all():
            return (whole.astype(np.int64) * NS).tolist()
    except (KeyError, TypeError, ValueError):
        pass
    return [_time_ns(c) for c in candles]


def _numbers(values: list) -> np.ndarray:
    """Floats of decimal strings; NaN where a value is not a number string."""
    try:
        return np.array(values, dtype=float)
    except (ValueError, TypeError):
        pass
    return pd.to_numeric(
        pd.Series([v if type(v) is str else None for v in values], dtype=object),
        errors="coerce",
    ).to_numpy(float)


def _time_ns(candle: object) -> int | None:
    try:
        return parse_time(candle["time"])  # type: ignore[index]
    except (KeyError, TypeError, ValueError):
        return None


def _problems(
    candles: list, times: list[int | None], price: str, step_s: int
) -> list[str | None]:
    """A reason per candle (None: fine), vectorised on the common all-present path."""
    if not candles:
        return []
    try:
        cols = {
            (key, f): [c[key][f] for c in candles]
            for key, _ in (COMPONENTS[p] for p in price)
            for f in "ohlc"
        }
        volumes = [c["volume"] for c in candles]
        flags = [c["complete"] for c in candles]
    except (KeyError, TypeError):
        return [candle_problem(c, t, price, step_s) for c, t in zip(candles, times)]
    bad = np.zeros(len(candles), dtype=bool)
    for key in {k for k, _ in cols}:
        o, h, lo, c = (_numbers(cols[(key, f)]) for f in "ohlc")
        with np.errstate(invalid="ignore"):
            bad |= np.isnan(o) | np.isnan(h) | np.isnan(lo) | np.isnan(c)
            bad |= (h < lo) | (o > h) | (o < lo) | (c > h) | (c < lo)
    if any(t is None for t in times):
        bad |= np.array([t is None for t in times], dtype=bool)
    else:
        bad |= np.array(times, dtype=np.int64) % (step_s * NS) != 0
    if not all(type(v) is int and v >= 0 for v in volumes):
        bad |= np.array([type(v) is not int or v < 0 for v in volumes], dtype=bool)
    if not all(type(f) is bool for f in flags):
        bad |= np.array([type(f) is not bool for f in flags], dtype=bool)
    return [
        candle_problem(candles[i], times[i], price, step_s) if b else None
        for i, b in enumerate(bad)
    ]


def candle_problem(
    candle: object, t: int | None, price: str, step_s: int
) -> str | None:
    """Why ``candle`` cannot be loaded, or None."""
    if not isinstance(candle, dict):
        return "candle is not a JSON object"
    for name in ("time", "volume", "complete"):
        if name not in candle:
            return f"missing field {name!r}"
    if t is None:
        return f"time {candle['time']!r} is not an RFC3339 or UNIX time"
    if t % (step_s * NS):
        return f"time {format_rfc3339(t)} is not on a whole {step_s // 60} minute(s)"
    if type(candle["volume"]) is not int or candle["volume"] < 0:
        return f"volume {candle['volume']!r} is not a non-negative integer"
    if type(candle["complete"]) is not bool:
        return f"complete {candle['complete']!r} is not a boolean"
    for code in price:
        key = COMPONENTS[code][0]
        quote = candle.get(key)
        if not isinstance(quote, dict):
            return f"missing field {key!r}"
        values = {}
        for f in "ohlc":
            if f not in quote:
                return f"missing field '{key}.{f}'"
            try:
                if not isinstance(quote[f], str):
                    raise ValueError
                values[f] = float(quote[f])
                if values[f] != values[f]:
                    raise ValueError
            except ValueError:
                return f"non-numeric price {quote[f]!r} in {key}.{f}"
        if values["h"] < values["l"]:
            return f"high {quote['h']} < low {quote['l']} in {key}"
        for f in "oc":
            if not values["l"] <= values[f] <= values["h"]:
                return (
                    f"{key}.{f} {quote[f]} outside "
                    f"[low {quote['l']}, high {quote['h']}]"
                )
    return None


def _rows(candles: list, times: list[int], pair: str, price: str) -> pd.DataFrame:
    data: dict[str, object] = {
        "pair": pair,
        "bar_start": pd.to_datetime(np.array(times, dtype="int64"), utc=True),
    }
    for code in price:
        key, prefix = COMPONENTS[code]
        for f, name in OHLC.items():
            data[prefix + name] = [c[key][f] for c in candles]
    data["volume"] = np.array([c["volume"] for c in candles], dtype="int64")
    if "B" in price and "A" in price:
        ask = pd.to_numeric(pd.Series(data["ask_close"], dtype=object))
        bid = pd.to_numeric(pd.Series(data["bid_close"], dtype=object))
        data["spread"] = (ask - bid).round(6).to_numpy()
    df = (
        pd.DataFrame(data)
        if candles
        else pd.DataFrame(
            {k: pd.Series(dtype=object) for k in data}
            | {
                "bar_start": pd.Series(dtype="datetime64[ns, UTC]"),
                "volume": pd.Series(dtype="int64"),
            }
        )
    )
    if "open" not in df:  # no mid asked: the mid columns are the bid/ask average
        for name in OHLC.values():
            if f"bid_{name}" in df and f"ask_{name}" in df:
                mid = (
                    pd.to_numeric(df[f"bid_{name}"]) + pd.to_numeric(df[f"ask_{name}"])
                ) / 2
                df[name] = mid.round(6)
            else:
                df[name] = df.get(f"bid_{name}", df.get(f"ask_{name}"))
    df["pair"] = pair
    return df.drop_duplicates("bar_start", keep="last").sort_values(
        "bar_start", ignore_index=True
    )
