"""Live updates: poll OANDA every few seconds, append newly completed M1 candles.

Each poll asks every pair for the candles after its watermark
(``from=<watermark>&includeFirst=false``; pairs without one get the latest
``lookback`` candles), loads the complete ones of all pairs in ONE transaction with
their watermarks, then brings ``raw.candles_m5`` up to date. The forming candle
(``complete: false``) is never stored; as the watermark stays before it, the next
poll fetches it again until it completes. :func:`follow` stops between polls when
its ``stop`` event is set (the CLI sets it on SIGINT/SIGTERM), so nothing is ever
half-written.

With ``stream=True`` a :class:`MinuteWatcher` thread reads OANDA's pricing stream
and announces each pair's new minute (a price, or a heartbeat, timed in a later
minute than the last one seen: the candle before it is complete); the loop then
fetches just those pairs at once instead of waiting for the next poll. ``interval``
becomes the longest wait without an announcement (a full poll then runs anyway,
e.g. while the stream reconnects). A pair whose candle is still forming when
asked is asked again 0.25 s later (at most ``MAX_RETRIES`` times in a row).
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
from ingestion.oanda.client import OandaClient, OandaConfigError, OandaRequestError
from ingestion.oanda.pager import MAX_COUNT
from ingestion.oanda.parse import Page, parse_candles
from ingestion.oanda.ratelimit import RateLimiter
from ingestion.oanda.store import load_pages, read_watermarks
from ingestion.oanda.timefmt import NS, format_unix, parse_time

MINUTE_NS = 60 * NS
#: Times a pair announced by the stream is asked again (every 0.25 s) while its
#: previous candle is still forming; then it waits for the next announcement.
MAX_RETRIES = 8

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
    stream: bool = False,
) -> FollowStats:
    """Poll until ``stop`` is set (or ``max_polls`` polls); see the module docstring."""
    names = resolve_pairs(pairs, settings.pair_list)
    stop = stop or threading.Event()
    client = client or OandaClient(settings, RateLimiter(100.0), timeout=10.0)
    source = f"oanda:{price}"
    stats = FollowStats()
    if stream and not client.account:
        raise OandaConfigError(
            "the pricing stream needs an account: set BQX_OANDA_ACCOUNT (or poll)"
        )
    watcher = MinuteWatcher(client, names, stop) if stream else None
    with (
        open_warehouse(settings) as wh,
        ThreadPoolExecutor(max_workers=min(8, len(names))) as pool,
    ):
        wh.ensure_schema()
        ensure_m5_schema(wh)
        refresh_m5(wh, names)  # catch up after a stop or a crash
        marks = read_watermarks(wh, names)
        if watcher:
            watcher.start()
        targets, tries = list(names), {}
        while not stop.is_set() and (max_polls is None or stats.polls < max_polls):
            started = time.time()
            pages = list(
                pool.map(
                    lambda p: _poll(client, p, marks.get(p), price, lookback, source),
                    targets,
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
            if watcher is None:
                stop.wait(max(0.0, interval - (time.time() - started)))
                continue
            late = {
                p.pair
                for p in pages
                if p.forming and _minute(p.forming) < watcher.minute(p.pair)
            }
            tries = {p: tries.get(p, 0) + 1 for p in late}  # reset once complete
            retry = {p for p in late if tries[p] <= MAX_RETRIES}
            due = watcher.wait(started + interval, 0.25 if retry else None)
            # announced pairs (and retries) at once; everyone after ``interval``
            targets = sorted(set(due) | retry) if due or retry else list(names)
    if watcher:
        watcher.close()
    client.close()
    return stats


def _minute(candle: dict) -> int:
    return parse_time(candle["time"]) // MINUTE_NS


class MinuteWatcher(threading.Thread):
    """Reads the pricing stream; :meth:`wait` returns the pairs with a new minute.

    Reconnects (backoff up to 30 s) when the stream fails; a refused stream (4xx
    other than 429) ends the watcher, and ``follow`` goes on polling.
    """

    def __init__(self, client: OandaClient, pairs: list[str], stop) -> None:
        super().__init__(name="bqx-minute-watcher", daemon=True)
        self.client, self.pairs, self.stop = client, pairs, stop
        self._minutes: dict[str, int] = {}
        self._due: set[str] = set()
        self._lock = threading.Lock()
        self._event = threading.Event()
        self._closed = threading.Event()
        self.messages = 0
        self.reconnects = 0

    def minute(self, pair: str) -> int:
        """The latest minute (UNIX minutes) a message showed for ``pair``."""
        with self._lock:
            return self._minutes.get(pair, -1)

    def run(self) -> None:
        failures = 0
        while not (self.stop.is_set() or self._closed.is_set()):
            try:
                for msg in self.client.price_stream(self.pairs):
                    if self.stop.is_set() or self._closed.is_set():
                        return
                    failures = 0
                    self._message(msg)
            except OandaRequestError as exc:
                if exc.status and exc.status < 500 and exc.status != 429:
                    log.warning("%s; following by polling only", exc)
                    return
                log.warning("%s; reconnecting", exc)
            except Exception as exc:  # noqa: BLE001 - a broken stream: reconnect
                log.warning("pricing stream failed (%s); reconnecting", exc)
            failures += 1
            self.reconnects += 1
            self._closed.wait(min(30.0, 0.25 * 2**failures))

    def _message(self, msg: dict) -> None:
        self.messages += 1
        try:
            minute = parse_time(msg["time"]) // MINUTE_NS
        except (KeyError, TypeError, ValueError):
            return
        kind = msg.get("type")
        if kind == "PRICE":
            pairs = [msg.get("instrument")]
        elif kind == "HEARTBEAT":
            pairs = self.pairs  # no tick: the minute passed for everyone
        else:
            return
        with self._lock:
            for pair in pairs:
                last = self._minutes.get(pair)
                if last is None or minute > last:
                    self._minutes[pair] = minute
                    if last is not None:
                        self._due.add(pair)
            if self._due:
                self._event.set()

    def wait(self, deadline: float, soon: float | None = None) -> list[str]:
        """Pairs announced until ``deadline`` (wall time; [] when none came).

        ``soon``: return after that many seconds at the latest (a retry).
        """
        if soon is not None:
            deadline = min(deadline, time.time() + soon)
        while not self.stop.is_set():
            left = deadline - time.time()
            if left <= 0 or self._event.wait(min(left, 0.1)):
                break
        with self._lock:
            due, self._due = sorted(self._due), set()
            self._event.clear()
        return due

    def close(self) -> None:
        """Stop at the next message (the thread is a daemon: it never blocks exit)."""
        self._closed.set()
        self.join(timeout=0.5)


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
