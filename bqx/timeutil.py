"""Small time helpers shared by the parts (all times are UTC)."""

from __future__ import annotations

from datetime import datetime

import pandas as pd


def utc(value: datetime | str | pd.Timestamp) -> pd.Timestamp:
    """A timestamp in UTC; naive input is taken as UTC."""
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def utc_now_minute() -> pd.Timestamp:
    """The start of the current minute, UTC."""
    return pd.Timestamp.now(tz="UTC").floor("min")
