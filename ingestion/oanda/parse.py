"""Turn a candles answer into rows to load and rejects to quarantine.

Prices stay decimal end to end (strings in, ``decimal128(18, 6)`` out, never float
text). A candle is rejected, with a reason, when a field is missing, a price is not
a decimal number with at most 6 decimals, high < low or the open/close lie outside
[low, high], its time is not on a whole minute (M1), or the body names another
instrument. ``complete: false`` candles are kept apart: they are never stored as
final.

The common case (a well-formed page with mid prices and UNIX times) is parsed in
one vectorised pass: pyarrow converts the candle dicts to columns and casts the
price strings to decimals in C++; any page that does not fit that shape (a missing
field, a wrong type, RFC3339 times, no mid asked) takes the per-candle path, which
gives every rejected candle its reason. Both paths give the same rows.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from operator import itemgetter

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from bqx.warehouse import CANDLE_COLUMNS, PRICE, candles_to_arrow
from ingestion.oanda.timefmt import NS, format_rfc3339, parse_time

COMPONENTS = {"M": ("mid", ""), "B": ("bid", "bid_"), "A": ("ask", "ask_")}
OHLC = {"o": "open", "h": "high", "l": "low", "c": "close"}
REJECT_COLUMNS = ["source", "record_ref", "pair", "raw_record", "reason"]
#: A price OANDA may send and ``decimal(18, 6)`` holds exactly.
DECIMAL_TEXT = r"^[+-]?(\d{1,12}(\.\d{0,6})?|\.\d{1,6})$"
_DECIMAL = re.compile(DECIMAL_TEXT)
UNIX_TEXT = r"^\d{1,11}(\.\d{1,9})?$"
#: Columns of :attr:`Page.rows` (``raw.candles_m1`` without ``source``).
ROW_COLUMNS = tuple(c for c in CANDLE_COLUMNS if c != "source")
ROW_SCHEMA = pa.schema(
    [("pair", pa.string()), ("bar_start", pa.timestamp("us", tz="UTC"))]
    + [(c, pa.int64() if c == "volume" else PRICE) for c in ROW_COLUMNS[2:]]
)
_STRUCTS: dict[str, pa.DataType] = {}


@dataclass
class Page:
    """One parsed page of candles.

    Attributes:
        pair: the instrument asked for.
        rows: complete, valid candles as an Arrow table of :data:`ROW_SCHEMA`
            (decimal prices, bid/ask/spread null unless asked), unique and sorted.
        rejects: quarantine rows (``source, record_ref, pair, raw_record, reason``).
        forming: the ``complete: false`` candle (raw dict), if any.
        last_ns: latest time of any complete candle received (valid or not), the
            ``from`` of the next page; None when the page had none.
        received: distinct candle times in the answer (forming included).
        complete_times: sorted distinct times (UNIX ns) of the complete candles.
    """

    pair: str
    rows: pa.Table
    rejects: pd.DataFrame
    forming: dict | None = None
    last_ns: int | None = None
    received: int = 0
    complete_times: np.ndarray = field(
        default_factory=lambda: np.empty(0, dtype=np.int64)
    )
    stats: dict = field(default_factory=dict)


def parse_candles(
    body: dict, pair: str, price: str, source: str, step_s: int = 60
) -> Page:
    """Validate the candles of ``body`` (a candles answer for ``pair``)."""
    candles = body.get("candles")
    if not isinstance(candles, list):
        raise ValueError(f"{pair}: answer has no 'candles' list")
    if candles and body.get("instrument") == pair and "M" in price:
        page = _parse_columns(candles, pair, price, source, step_s)
        if page is not None:
            return page
    return _parse_each(body, candles, pair, price, source, step_s)


def empty_rows() -> pa.Table:
    """A :attr:`Page.rows` table without rows."""
    return ROW_SCHEMA.empty_table()


# -- the vectorised path -----------------------------------------------------
def _struct(price: str) -> pa.DataType:
    if price not in _STRUCTS:
        quote = pa.struct([(f, pa.string()) for f in "ohlc"])
        _STRUCTS[price] = pa.struct(
            [("complete", pa.bool_()), ("volume", pa.int64()), ("time", pa.string())]
            + [(COMPONENTS[p][0], quote) for p in price]
        )
    return _STRUCTS[price]


def _all(mask: pa.Array) -> bool:
    return bool(pc.all(mask).as_py())


def _parse_columns(
    candles: list, pair: str, price: str, source: str, step_s: int
) -> Page | None:
    """The page parsed column-wise, or None when it needs the per-candle path."""
    try:
        arr = pa.array(candles, type=_struct(price))
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, KeyError):
        return None
    complete, volume, times, *quotes = arr.flatten()
    leaves = [complete, volume, times]
    for q in quotes:
        leaves.extend(q.flatten())
        leaves.append(q)
    if arr.null_count or any(a.null_count for a in leaves):
        return None  # a missing field: the per-candle path names it
    if set(map(type, map(itemgetter("volume"), candles))) != {int}:
        return None  # floats/bools pyarrow would coerce
    if not _all(pc.match_substring_regex(times, UNIX_TEXT)):
        return None  # RFC3339 (or garbage): parsed one by one
    prices: dict[str, pa.Array] = {}
    for code, q in zip(price, quotes):
        _, prefix = COMPONENTS[code]
        for f, values in zip("ohlc", q.flatten()):
            if not _all(pc.match_substring_regex(values, DECIMAL_TEXT)):
                return None
            prices[prefix + OHLC[f]] = values.cast(PRICE)
    secs = times.cast(pa.float64()).to_numpy()
    whole = np.floor(secs) == secs
    if whole.all():
        ns = secs.astype(np.int64) * NS
    else:
        ns = np.array([parse_time(t) for t in times.to_pylist()], dtype=np.int64)
    bad = ns % (step_s * NS) != 0
    bad |= volume.to_numpy() < 0
    for code in price:
        _, prefix = COMPONENTS[code]
        o, h, lo, c = (prices[prefix + n] for n in OHLC.values())
        for wrong in (pc.less(h, lo), pc.greater(o, h), pc.less(o, lo),
                      pc.greater(c, h), pc.less(c, lo)):  # fmt: skip
            bad |= wrong.to_numpy(zero_copy_only=False)
    done = complete.to_numpy(zero_copy_only=False)
    rejects: list[tuple] = []
    forming = None
    for i in np.flatnonzero(bad | ~done):
        why = candle_problem(candles[i], int(ns[i]), price, step_s) if bad[i] else None
        if why is not None:
            rejects.append(_reject(candles[i], int(ns[i]), i, pair, source, why))
        elif not done[i]:
            forming = candles[i]
        else:
            bad[i] = False  # the per-candle check found nothing wrong
    keep = np.flatnonzero(~bad & done)
    good_ns = ns[done]
    rows = {
        "pair": pa.array(np.full(len(keep), pair, dtype=object), pa.string()),
        "bar_start": pa.array(ns[keep] // 1000, pa.timestamp("us", tz="UTC")),
    }
    take = pa.array(keep)
    for name, values in prices.items():
        rows[name] = values.take(take)
    rows["volume"] = volume.take(take)
    if "bid_close" in rows and "ask_close" in rows:
        rows["spread"] = pc.subtract(rows["ask_close"], rows["bid_close"]).cast(PRICE)
    return Page(
        pair,
        _rows_table(rows, len(keep)),
        _rejects_frame(rejects),
        forming,
        int(good_ns.max()) if len(good_ns) else None,
        len(np.unique(ns)),
        np.unique(good_ns),
    )


def _rows_table(columns: dict[str, pa.Array], n: int) -> pa.Table:
    """``columns`` completed to :data:`ROW_SCHEMA`, unique per time, sorted."""
    arrays = [
        columns[c] if c in columns else pa.nulls(n, ROW_SCHEMA.field(c).type)
        for c in ROW_COLUMNS
    ]
    table = pa.Table.from_arrays(arrays, schema=ROW_SCHEMA)
    ts = table.column("bar_start").to_numpy().astype(np.int64)
    if len(ts) > 1 and not (np.diff(ts) > 0).all():
        order = np.argsort(ts, kind="stable")
        ordered = ts[order]
        last = np.append(ordered[1:] != ordered[:-1], True)  # last of each time
        table = table.take(pa.array(order[last]))
    return table


def _reject(candle, t: int | None, i: int, pair: str, source: str, why: str):
    ref = (
        f"{pair}:{format_rfc3339(t)}"
        if t is not None
        else f"{pair}:#{i}:{json.dumps(candle, sort_keys=True)[:120]}"
    )
    return (source, ref, pair, json.dumps(candle, sort_keys=True), why)


def _rejects_frame(rejects: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rejects, columns=REJECT_COLUMNS).drop_duplicates("record_ref")


# -- the per-candle path -------------------------------------------------------
def _parse_each(
    body: dict, candles: list, pair: str, price: str, source: str, step_s: int
) -> Page:
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
            rejects.append(_reject(c, t, i, pair, source, why))
    kept_times = [t for i in keep if (t := times[i]) is not None]
    frame = _rows([candles[i] for i in keep], kept_times, pair, price)
    table = candles_to_arrow(frame, source).drop_columns(["source"])
    return Page(
        pair,
        _rows_table({c: table.column(c).combine_chunks() for c in table.column_names},
                    table.num_rows),
        _rejects_frame(rejects),
        forming,
        last_ns,
        received,
        np.array(sorted(set(good_times)), dtype=np.int64),
    )  # fmt: skip


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
    """Floats of decimal strings; NaN where a value is not a decimal string."""
    if all(type(v) is str and _DECIMAL.match(v) for v in values):
        return np.array(values, dtype=float)
    return pd.to_numeric(
        pd.Series(
            [v if type(v) is str and _DECIMAL.match(v) else None for v in values],
            dtype=object,
        ),
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
            text = quote[f]
            if not isinstance(text, str) or not _DECIMAL.match(text):
                if isinstance(text, str) and re.match(r"^[+-]?\d+\.\d{7,}$", text):
                    return f"price {text!r} in {key}.{f} has more than 6 decimals"
                return f"non-numeric price {text!r} in {key}.{f}"
            values[f] = float(text)
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
