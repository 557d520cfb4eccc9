"""Backfill M1 candles from OANDA v20 into the warehouse, resumable and crash-safe.

Per pair, the backfill starts at ``since`` or, when the pair's watermark in
``raw.ingest_watermarks`` is later, just after it; fetcher threads page forward
concurrently under one shared rate limiter, and a single writer loads the pages in
batches with the warehouse's bulk path, each batch with its watermarks in one
transaction. Killing the process at any point loses at most the batch in flight,
which the next run fetches again; reruns never duplicate (upserts).
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import pandas as pd

from bqx.pairs import resolve_pairs
from bqx.settings import Settings
from bqx.warehouse import LoadResult, open_warehouse
from ingestion.oanda.client import OandaClient, OandaError, OandaRequestError
from ingestion.oanda.pager import PageRequest, iter_pages
from ingestion.oanda.parse import Page
from ingestion.oanda.ratelimit import RateLimiter
from ingestion.oanda.store import load_pages, read_watermarks
from ingestion.oanda.timefmt import NS, to_ns

BATCH_ROWS = 50_000


class BackfillError(Exception):
    """The backfill could not finish every pair; the message names what failed."""


class ProgressSink(Protocol):
    """Receives progress events (see :mod:`ingestion.oanda.progress`)."""

    def start(self, pair: str, total: int) -> None: ...

    def advance(self, pair: str, bars: int, pages: int) -> None: ...

    def finish(self, pair: str, ok: bool) -> None: ...


@dataclass
class PairStats:
    """What the backfill did for one pair."""

    pair: str
    start: pd.Timestamp
    pages: int = 0
    received: int = 0
    bars: int = 0
    rejected: int = 0
    error: str | None = None


@dataclass
class BackfillSummary:
    """The outcome of :func:`backfill`, with the time split for benchmarks."""

    pairs: dict[str, PairStats]
    loaded: LoadResult = field(default_factory=lambda: LoadResult(0, 0, 0))
    quarantined: int = 0
    wall_s: float = 0.0
    http_s: float = 0.0
    parse_s: float = 0.0
    load_s: float = 0.0
    requests: int = 0
    retries: int = 0

    @property
    def bars(self) -> int:
        return sum(p.bars for p in self.pairs.values())

    @property
    def rejected(self) -> int:
        return sum(p.rejected for p in self.pairs.values())

    @property
    def failed(self) -> list[PairStats]:
        return [p for p in self.pairs.values() if p.error]


def backfill(
    settings: Settings,
    pairs: list[str],
    since: datetime | str,
    until: datetime | str | None = None,
    price: str = "M",
    rate: float = 100.0,
    workers: int = 8,
    page_size: int = 5000,
    timeout: float = 10.0,
    progress: ProgressSink | None = None,
    client: OandaClient | None = None,
    stop: threading.Event | None = None,
) -> BackfillSummary:
    """Backfill ``pairs`` from ``since`` (or their watermark) to ``until`` or now.

    Pair names are checked against the configured universe before any request or
    SQL. Raises :class:`BackfillError` (after loading everything that could be
    loaded) when a pair failed; the message names the pair, the time range and the
    last HTTP status.
    """
    names = resolve_pairs(pairs, settings.pair_list)
    price = _check_price(price)
    since_ns = to_ns(since)
    until_ns = to_ns(until) if until is not None else None
    stop = stop or threading.Event()
    own_client = client is None
    client = client or OandaClient(settings, RateLimiter(rate), timeout=timeout)
    try:
        return _run(
            settings,
            names,
            since_ns,
            until_ns,
            price,
            workers,
            page_size,
            progress,
            client,
            stop,
        )
    finally:
        if own_client:
            client.close()


def _run(
    settings,
    names,
    since_ns,
    until_ns,
    price,
    workers,
    page_size,
    progress,
    client,
    stop,
) -> BackfillSummary:
    wall = time.perf_counter()
    with open_warehouse(settings) as wh:
        wh.ensure_schema()
        marks = read_watermarks(wh, names)
        requests = {
            n: _request(n, since_ns, until_ns, marks.get(n), price, page_size)
            for n in names
        }
        summary = BackfillSummary(
            {
                n: PairStats(n, pd.Timestamp(r.start_ns, unit="ns", tz="UTC"))
                for n, r in requests.items()
            }
        )
        for n, r in requests.items():
            if progress:
                progress.start(n, _expected_bars(r))
        pages: queue.Queue = queue.Queue(maxsize=4 * max(1, workers))
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(names)))) as pool:
            for r in requests.values():
                pool.submit(_fetch, client, r, pages, stop)
            try:
                _write(wh, pages, len(names), summary, price, progress, stop)
            except BaseException:
                stop.set()
                raise
    summary.wall_s = time.perf_counter() - wall
    summary.requests, summary.retries = client.requests, client.retries
    if summary.failed:
        raise BackfillError("; ".join(p.error or "" for p in summary.failed))
    return summary


def _check_price(price: str) -> str:
    price = price.upper()
    if not price or any(c not in "MBA" for c in price) or len(set(price)) < len(price):
        raise ValueError(
            f"invalid --price {price!r}: use letters of MBA, e.g. M or MBA"
        )
    return "".join(c for c in "MBA" if c in price)


def _request(pair, since_ns, until_ns, mark, price, page_size) -> PageRequest:
    start, include_first = since_ns, True
    if mark is not None and mark.value >= since_ns:
        start, include_first = int(mark.value), False
    return PageRequest(pair, start, until_ns, include_first, price, "M1", page_size)


def _expected_bars(req: PageRequest) -> int:
    end = req.until_ns or time.time_ns()
    return max(1, int((end - req.start_ns) / NS / 60 * 5 / 7))


def _fetch(client: OandaClient, req: PageRequest, out: queue.Queue, stop) -> None:
    """Fetcher thread: pages of one pair into ``out``, then a final marker."""
    error = None
    try:
        for page in iter_pages(client, req, stop):
            _put(out, page, stop)
    except OandaError as exc:
        error = str(exc)
    except Exception as exc:  # noqa: BLE001 - reported per pair, never swallowed
        error = f"{req.pair}: {type(exc).__name__}: {exc}"
    _put(out, (req.pair, error), stop)


def _put(out: queue.Queue, item: object, stop: threading.Event) -> None:
    """Queue ``item``, giving up once ``stop`` is set (the writer has gone)."""
    while not stop.is_set():
        try:
            out.put(item, timeout=0.2)
            return
        except queue.Full:
            continue


def _write(
    wh, pages: queue.Queue, n_pairs: int, summary, price, progress, stop
) -> None:
    """Writer loop: batch pages (<= BATCH_ROWS rows) and load each batch.

    Once ``stop`` is set it returns at the next idle moment; pages not loaded yet
    are simply fetched again by the next run (their watermark did not move).
    """
    done = 0
    while done < n_pairs:
        batch: list[Page] = []
        finished: list[tuple[str, str | None]] = []
        rows = 0
        try:
            item = pages.get(timeout=0.2)
        except queue.Empty:
            if stop.is_set():
                return
            continue
        while True:
            if isinstance(item, tuple):
                done += 1
                finished.append(item)
            else:
                batch.append(item)
                rows += item.rows.num_rows
            if rows >= BATCH_ROWS or done >= n_pairs:
                break
            try:
                item = pages.get_nowait()
            except queue.Empty:
                break
        if batch:
            _load(wh, batch, summary, price, progress)
        for pair, error in finished:
            summary.pairs[pair].error = error
            if progress:
                progress.finish(pair, error is None)


def _load(wh, batch: list[Page], summary: BackfillSummary, price, progress) -> None:
    t0 = time.perf_counter()
    result, quarantined = load_pages(wh, batch, f"oanda:{price}")
    summary.load_s += time.perf_counter() - t0
    summary.loaded = summary.loaded + result
    summary.quarantined += quarantined
    for page in batch:
        stats = summary.pairs[page.pair]
        stats.pages += 1
        stats.received += page.received
        stats.rejected += len(page.rejects)
        stats.bars += page.rows.num_rows
        summary.http_s += page.stats.get("http_s", 0.0)
        summary.parse_s += page.stats.get("parse_s", 0.0)
        if progress:
            progress.advance(page.pair, page.rows.num_rows, 1)


__all__ = ["BackfillError", "BackfillSummary", "OandaRequestError", "backfill"]
