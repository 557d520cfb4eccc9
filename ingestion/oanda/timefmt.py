"""OANDA time formats: RFC3339 with nanoseconds and UNIX seconds strings.

Times are handled as integer UNIX nanoseconds (``int``) inside the fake and the
pager; :func:`to_timestamp` turns them into tz-aware pandas timestamps.
"""

from __future__ import annotations

import re
import time
from datetime import datetime

import pandas as pd

NS = 1_000_000_000
_UNIX = re.compile(r"^\d{1,11}(\.\d{1,9})?$")
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$"
)


def parse_time(text: str) -> int:
    """Parse an OANDA time string (RFC3339 or UNIX seconds) into UNIX nanoseconds.

    Raises:
        ValueError: the text is in neither format; the message quotes it.
    """
    text = str(text).strip()
    if _UNIX.match(text):
        whole, _, frac = text.partition(".")
        return int(whole) * NS + int((frac or "0").ljust(9, "0"))
    if _RFC3339.match(text):
        return int(pd.Timestamp(text).tz_convert("UTC").value)
    raise ValueError(f"not an RFC3339 or UNIX time: {text!r}")


def format_rfc3339(ns: int) -> str:
    """``2024-01-02T03:04:00.000000000Z`` for UNIX nanoseconds ``ns``."""
    secs, frac = divmod(int(ns), NS)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    return f"{stamp}.{frac:09d}Z"


def format_unix(ns: int) -> str:
    """``1704164640.000000000`` for UNIX nanoseconds ``ns``."""
    secs, frac = divmod(int(ns), NS)
    return f"{secs}.{frac:09d}"


def to_ns(value: datetime | pd.Timestamp | str | int) -> int:
    """UNIX nanoseconds of a datetime/timestamp/string (naive values are UTC)."""
    if isinstance(value, int):
        return value
    if isinstance(value, str) and (_UNIX.match(value) or _RFC3339.match(value)):
        return parse_time(value)
    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.value)


def to_timestamp(ns: int) -> pd.Timestamp:
    """A tz-aware UTC timestamp for UNIX nanoseconds."""
    return pd.Timestamp(int(ns), unit="ns", tz="UTC")
