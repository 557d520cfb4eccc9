"""The backfill pager of docs/oanda-v20.md.

First page ``from=T0&count=5000``; each next page ``from=<time of the last candle
received>&includeFirst=false&count=5000``; stop at a short page (the present), an
empty one, or ``until``. Candles at or after ``until`` are dropped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from ingestion.oanda.client import OandaClient
from ingestion.oanda.parse import Page, parse_candles
from ingestion.oanda.timefmt import format_rfc3339, format_unix

MAX_COUNT = 5000


@dataclass
class PageRequest:
    """What to page through: one instrument from ``start_ns`` to ``until_ns``."""

    pair: str
    start_ns: int
    until_ns: int | None = None
    include_first: bool = True
    price: str = "M"
    granularity: str = "M1"
    count: int = MAX_COUNT

    @property
    def source(self) -> str:
        """Value of the ``source`` column for these candles (``oanda:M``)."""
        return f"oanda:{self.price}"

    def describe(self, cursor_ns: int) -> str:
        """``EUR_USD M1 2024-01-02T00:00:00Z..now`` for messages."""
        end = format_rfc3339(self.until_ns)[:19] + "Z" if self.until_ns else "now"
        return (
            f"{self.pair} {self.granularity} {format_rfc3339(cursor_ns)[:19]}Z..{end}"
        )


def iter_pages(
    client: OandaClient, req: PageRequest, stop: threading.Event | None = None
) -> Iterator[Page]:
    """Yield the parsed pages of ``req`` in time order (``page.stats['http_s']``).

    Raises:
        OandaRequestError: a refused request or one that kept failing; its message
            names the pair and the time range left.
    """
    cursor, include_first = req.start_ns, req.include_first
    step = 60 if req.granularity == "M1" else None
    while not (stop and stop.is_set()):
        if req.until_ns is not None and cursor >= req.until_ns:
            return
        params = {
            "granularity": req.granularity,
            "price": req.price,
            "count": str(req.count),
            "from": format_unix(cursor),
        }
        if not include_first:
            params["includeFirst"] = "false"
        t0 = time.perf_counter()
        body = client.candles(req.pair, params, req.describe(cursor))
        t1 = time.perf_counter()
        page = parse_candles(body, req.pair, req.price, req.source, step or 1)
        reached = req.until_ns is not None and _cut(page, req.until_ns)
        page.stats = {"http_s": t1 - t0, "parse_s": time.perf_counter() - t1}
        yield page
        if reached or page.last_ns is None or page.received < req.count:
            return
        cursor, include_first = page.last_ns, False


def _cut(page: Page, until_ns: int) -> bool:
    """Drop what starts at or after ``until_ns``; True when ``until`` was reached."""
    until = pa.scalar(until_ns // 1000, pa.timestamp("us", tz="UTC"))
    page.rows = page.rows.filter(pc.less(page.rows.column("bar_start"), until))
    before = page.complete_times[page.complete_times < until_ns]
    reached = len(before) < len(page.complete_times)
    if reached or (page.forming is not None and _time(page.forming) >= until_ns):
        page.forming = None
    page.last_ns = int(before.max()) if len(before) else None
    return reached


def _time(candle: dict) -> int:
    from ingestion.oanda.timefmt import parse_time

    return parse_time(candle["time"])
