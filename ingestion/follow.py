"""Live updates: poll OANDA every few seconds, append newly completed M1 candles.

Each poll asks every pair for the candles after its watermark
(``from=<watermark>&includeFirst=false``; pairs without one get the latest
``lookback`` candles), loads the complete ones of all pairs in ONE transaction with
their watermarks, then brings ``raw.candles_m5`` up to date. The forming candle
(``complete: false``) is never stored; as the watermark stays before it, the next
poll fetches it again until it completes. :func:`follow` stops between polls when
its ``stop`` event is set (the CLI sets it on SIGINT/SIGTERM), so nothing is ever
half-written.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pandas as pd

from bqx.pairs import resolve_pairs
from bqx.settings import Settings
from bqx.warehouse import open_warehouse
from ingestion.m5 import ensure_m5_schema, refresh_m5
from ingestion.oanda.client import OandaClient, OandaRequestError
from ingestion.oanda.pager import MAX_COUNT
from ingestion.oanda.parse import Page, parse_candles
from ingestion.oanda.ratelimit import RateLimiter
from ingestion.oanda.store import load_pages, read_watermarks
from ingestion.oanda.timefmt import format_unix

log = logging.getLogger(__name__)


@dataclass
class PollResult:
    """One poll: new bars per pair and when they were committed (UNIX seconds)."""

    number: int
    started_at: float
    committed_at: float
    new_bars: dict[str, list[pd.Timestamp]]
    forming: dict[str, str]
    rejected: int


@dataclass
class FollowStats:
    """Totals of a :func:`follow` run."""

    polls: int = 0
    bars: int = 0
    rejected: int = 0
    history: list[PollResult] = field(default_factory=list)


def follow(
    settings: Settings,
    pairs: list[str],
    interval: float = 2.0,
    price: str = "M",
    lookback: int = 500,
    stop: threading.Event | None = None,
    max_polls: int | None = None,
    on_poll: Callable[[PollResult], None] | None = None,
    client: OandaClient | None = None,
    keep_history: bool = False,
) -> FollowStats:
    """Poll until ``stop`` is set (or ``max_polls`` polls); see the module docstring."""
    names = resolve_pairs(pairs, settings.pair_list)
    stop = stop or threading.Event()
    client = client or OandaClient(settings, RateLimiter(100.0), timeout=10.0)
    source = f"oanda:{price}"
    stats = FollowStats()
    with (
        open_warehouse(settings) as wh,
        ThreadPoolExecutor(max_workers=min(8, len(names))) as pool,
    ):
        wh.ensure_schema()
        ensure_m5_schema(wh)
        refresh_m5(wh, names)  # catch up after a stop or a crash
        marks = read_watermarks(wh, names)
        while not stop.is_set() and (max_polls is None or stats.polls < max_polls):
            started = time.time()
            pages = list(
                pool.map(
                    lambda p: _poll(client, p, marks.get(p), price, lookback, source),
                    names,
                )
            )
            load_pages(wh, pages, source)
            refresh_m5(wh, [p.pair for p in pages if p.rows.num_rows])
            committed = time.time()
            for page in pages:
                if page.last_ns is not None:
                    marks[page.pair] = max(
                        pd.Timestamp(page.last_ns, unit="ns", tz="UTC"),
                        marks.get(page.pair, pd.Timestamp(0, tz="UTC")),
                    )
            result = PollResult(
                stats.polls + 1, started, committed,
                {p.pair: _times(p) for p in pages if p.rows.num_rows},
                {p.pair: p.forming["time"] for p in pages if p.forming},
                sum(len(p.rejects) for p in pages),
            )  # fmt: skip
            stats.polls += 1
            stats.bars += sum(len(v) for v in result.new_bars.values())
            stats.rejected += result.rejected
            if keep_history:
                stats.history.append(result)
            if on_poll:
                on_poll(result)
            stop.wait(max(0.0, interval - (time.time() - started)))
    client.close()
    return stats


def _times(page: Page) -> list[pd.Timestamp]:
    return list(page.rows.column("bar_start").to_pandas())


def _poll(client, pair, mark, price, lookback, source) -> Page:
    params = {"granularity": "M1", "price": price}
    if mark is None:
        params["count"] = str(lookback)
        what = f"{pair} M1 latest {lookback}"
    else:
        params.update(count=str(MAX_COUNT), includeFirst="false")
        params["from"] = format_unix(int(mark.value))
        what = f"{pair} M1 {mark:%Y-%m-%dT%H:%M}Z..now"
    try:
        body = client.candles(pair, params, what)
    except OandaRequestError as exc:
        if exc.status is not None and exc.status < 500 and exc.status != 429:
            raise
        log.warning("%s; trying again at the next poll", exc)
        body = {"instrument": pair, "candles": []}
    return parse_candles(body, pair, price, source)
