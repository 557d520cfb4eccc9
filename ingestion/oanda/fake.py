"""A local fake of OANDA's v20 REST API: candles, pricing polling and stream.

It follows ``docs/oanda-v20.md``: bearer-token auth (401 otherwise), the candles
endpoint with ``price`` M/B/A, ``granularity`` M1 and coarser, ``count``/``from``/
``to``/``includeFirst``/``smooth``/alignment options, both datetime formats, the
documented 400 messages, ``complete: false`` on the forming candle, a ``RequestID``
header on every response, HTTP/1.1 keep-alive. Faults are switched on per test
through :attr:`FakeOanda.faults` (see :mod:`ingestion.oanda.faults`) and malformed
candles through :meth:`FakeOanda.corrupt`.

The fake has its own clock (:class:`FakeClock`): fixed by default half a minute into
the newest bar, or running at any speed from a chosen time for live-update demos.
Sub-minute granularities (S5..S30) are valid names but the fake has no tick data
for them: it answers them with a 400 that says so.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import count as counter
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import numpy as np

from ingestion.oanda.faults import FaultPlan
from ingestion.oanda.market import (
    GRANULARITIES,
    SUB_MINUTE,
    WEEKDAYS,
    Alignment,
    FakeMarket,
)
from ingestion.oanda.timefmt import NS, format_rfc3339, format_unix, parse_time

MAX_COUNT = 5000
UNAUTHORIZED = "Insufficient authorization to perform request."
CORRUPTIONS = ("non_numeric", "high_lt_low", "off_minute", "missing_field")


class ApiError(Exception):
    """An error answer: HTTP status and OANDA's ``errorMessage``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def invalid(name: str) -> ApiError:
    """OANDA's 400 for a bad parameter value."""
    return ApiError(400, f"Invalid value specified for '{name}'")


class FakeClock:
    """The fake's "now" in UNIX seconds: fixed, or running at ``speed`` x real time."""

    def __init__(self, now: float) -> None:
        self._lock = threading.Lock()
        self._anchor = float(now)
        self._wall = time.time()
        self._speed = 0.0

    def now(self) -> float:
        """The current fake time (UNIX seconds)."""
        with self._lock:
            return self._anchor + (time.time() - self._wall) * self._speed

    def set(self, now: float, speed: float = 0.0) -> None:
        """Jump to ``now``; with ``speed`` > 0 the clock then runs."""
        with self._lock:
            self._anchor, self._wall, self._speed = float(now), time.time(), speed

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``."""
        self.set(self.now() + seconds, self._speed)

    def wall_time_of(self, fake_time: float) -> float:
        """The real UNIX time at which a running clock shows ``fake_time``."""
        with self._lock:
            if not self._speed:
                raise ValueError("the clock is not running")
            return self._wall + (fake_time - self._anchor) / self._speed


class FakeOanda:
    """The fake server; use as a context manager or call :meth:`start`/:meth:`stop`."""

    def __init__(
        self,
        market: FakeMarket,
        token: str = "bqx-fake-token",
        account: str = "101-001-0000000-001",
        now: float | None = None,
        latency: float = 0.0,
        port: int = 0,
        heartbeat_s: float = 5.0,
    ) -> None:
        self.market = market
        self.token = token
        self.account = account
        self.clock = FakeClock(market.last_start + 30 if now is None else now)
        self.latency = latency
        self.heartbeat_s = heartbeat_s
        self.faults = FaultPlan()
        self.corruptions: dict[tuple[str, int], str] = {}
        self.requests = 0
        self._ids = counter(1)
        self._lock = threading.Lock()
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.stopping = threading.Event()

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> FakeOanda:
        """Bind 127.0.0.1 (a free port unless one was given) and serve in a thread."""
        server = ThreadingHTTPServer(("127.0.0.1", self._port), _Handler)
        server.daemon_threads = True
        server.fake = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.stopping.set()
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeOanda:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port."""
        assert self._server, "the fake is not started"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:43123``."""
        return f"http://127.0.0.1:{self.port}"

    # -- test controls -------------------------------------------------------
    def corrupt(self, pair: str, bar_start: Any, kind: str) -> None:
        """Serve the M1 candle of ``pair`` at ``bar_start`` malformed (``kind``)."""
        if kind not in CORRUPTIONS:
            raise ValueError(f"unknown corruption {kind!r}: use one of {CORRUPTIONS}")
        from ingestion.oanda.timefmt import to_ns

        self.corruptions[(pair, to_ns(bar_start) // NS)] = kind

    def next_request_id(self) -> str:
        """A fresh ``RequestID`` (also counts requests)."""
        with self._lock:
            self.requests += 1
        return str(10_000_000 + next(self._ids))

    # -- endpoints -----------------------------------------------------------
    def candles(
        self, instrument: str, query: dict[str, str], unix: bool
    ) -> tuple[bytes, list]:
        """Body of ``GET /v3/instruments/{instrument}/candles`` and faults to apply."""
        if instrument not in self.market.pairs:
            raise invalid("instrument")
        price = query.get("price", "M")
        if (
            not price
            or any(ch not in "MBA" for ch in price)
            or len(set(price)) < len(price)
        ):
            raise invalid("price")
        granularity = query.get("granularity", "S5")
        if granularity not in GRANULARITIES:
            raise invalid("granularity")
        if granularity in SUB_MINUTE:
            raise ApiError(400, f"granularity {granularity} is not served by the fake")
        align = _alignment(query)
        include_first = _boolean(query, "includeFirst", True)
        smooth = _boolean(query, "smooth", False)
        count = _count(query)
        start = _time(query, "from")
        end = _time(query, "to")
        now = self.clock.now()
        if count is not None and start is not None and end is not None:
            raise ApiError(
                400,
                "Invalid value specified for 'count'. 'count' cannot "
                "be specified when both 'from' and 'to' are specified",
            )
        if end is not None and end > now * NS:
            raise ApiError(
                400, "Invalid value specified for 'to'. Time is in the future"
            )
        if start is not None and end is not None and end < start:
            raise ApiError(
                400, "Invalid value specified for 'to'. 'to' is before 'from'"
            )
        faults = self.faults.pick(instrument)
        vis = self.market.visible(instrument, granularity, align, now)
        starts = vis.series.start[: vis.n] * NS
        count = 500 if count is None else count
        if start is not None:
            lo = int(np.searchsorted(starts, start, side="left"))
            if not include_first and lo < vis.n and starts[lo] == start:
                lo += 1
            if end is not None:
                hi = int(np.searchsorted(starts, end, side="left"))
                if hi - lo > MAX_COUNT:
                    raise ApiError(400, "Maximum value for 'count' exceeded")
            else:
                hi = min(lo + count, vis.n)
        else:
            hi = (
                vis.n if end is None else int(np.searchsorted(starts, end, side="left"))
            )
            lo = max(0, hi - count)
        indices = list(range(lo, max(lo, hi)))
        kinds = {f.kind for f in faults}
        if "duplicate" in kinds and indices:
            indices = sorted(indices + indices[:: max(1, len(indices) // 3)])
        if "shuffle" in kinds and len(indices) > 1:
            indices = indices[1:] + indices[:1]
            indices[0], indices[-1] = indices[-1], indices[0]
        name = instrument
        if "wrong_instrument" in kinds:
            others = [p for p in self.market.pairs if p != instrument] or ["XAU_USD"]
            name = others[0]
        body = self._candles_body(
            name, instrument, granularity, price, vis, indices, smooth, unix
        )
        return body, faults

    def _candles_body(
        self, name, instrument, granularity, price, vis, indices, smooth, unix
    ) -> bytes:
        s = vis.series
        digits = self.market.digits[instrument]
        half = self.market.half_spread[instrument]
        fmt_time = format_unix if unix else format_rfc3339
        corrupt = self.corruptions if granularity == "M1" else {}
        components = [
            (key, d)
            for code, key, d in (
                ("M", "mid", 0.0),
                ("B", "bid", -half),
                ("A", "ask", half),
            )
            if code in price
        ]
        parts = []
        for i in indices:
            if vis.partial is not None and i == vis.n - 1:
                o, h, lo, c, v = vis.partial
                complete = False
            else:
                o, h, lo, c, v = s.o[i], s.h[i], s.l[i], s.c[i], int(s.volume[i])
                complete = True
            if smooth and i > 0:
                o = s.c[i - 1]
            t = int(s.start[i])
            kind = corrupt.get((instrument, t)) if corrupt else None
            if kind is None:
                quotes = "".join(
                    f',"{key}":{{"o":"{o + d:.{digits}f}","h":"{h + d:.{digits}f}",'
                    f'"l":"{lo + d:.{digits}f}","c":"{c + d:.{digits}f}"}}'
                    for key, d in components
                )
                flag = "true" if complete else "false"
                parts.append(
                    f'{{"complete":{flag},"volume":{int(v)},'
                    f'"time":"{fmt_time(t * NS)}"{quotes}}}'
                )
                continue
            candle: dict[str, Any] = {
                "complete": complete,
                "volume": int(v),
                "time": fmt_time(t * NS),
            }
            for key, d in components:
                candle[key] = {
                    k: f"{x + d:.{digits}f}" for k, x in zip("ohlc", (o, h, lo, c))
                }
            _apply_corruption(candle, kind, price, unix)
            parts.append(json.dumps(candle, separators=(",", ":")))
        head = json.dumps({"instrument": name, "granularity": granularity})[:-1]
        return (head + ',"candles":[' + ",".join(parts) + "]}").encode()

    def pricing(self, account: str, query: dict[str, str], unix: bool) -> bytes:
        """Body of ``GET /v3/accounts/{account}/pricing``."""
        self._check_account(account)
        instruments = self._instruments(query)
        since = _time(query, "since")
        now = self.clock.now()
        prices = [
            p
            for p in self.prices(instruments, now, unix)
            if since is None or p.pop("_t") > since
        ]
        for p in prices:
            p.pop("_t", None)
        fmt_time = format_unix if unix else format_rfc3339
        return json.dumps({"prices": prices, "time": fmt_time(int(now * NS))}).encode()

    def prices(self, instruments: list[str], now: float, unix: bool) -> list[dict]:
        """One ClientPrice per instrument at fake time ``now``."""
        fmt_time = format_unix if unix else format_rfc3339
        out = []
        for pair in instruments:
            vis = self.market.visible(pair, "M1", Alignment(), now)
            if vis.n == 0:
                continue
            mid = vis.partial[3] if vis.partial else float(vis.series.c[vis.n - 1])
            t = now if vis.partial else float(vis.series.end[vis.n - 1])
            d, half = self.market.digits[pair], self.market.half_spread[pair]
            bid, ask = f"{mid - half:.{d}f}", f"{mid + half:.{d}f}"
            out.append({
                "type": "PRICE", "instrument": pair, "time": fmt_time(int(t * NS)),
                "tradeable": True,
                "bids": [{"price": bid, "liquidity": 10000000}],
                "asks": [{"price": ask, "liquidity": 10000000}],
                "closeoutBid": bid, "closeoutAsk": ask, "_t": int(t * NS),
            })  # fmt: skip
        return out

    def _check_account(self, account: str) -> None:
        if self.account and account != self.account:
            raise invalid("accountID")

    def _instruments(self, query: dict[str, str]) -> list[str]:
        names = [n for n in query.get("instruments", "").split(",") if n]
        if not names or any(n not in self.market.pairs for n in names):
            raise invalid("instruments")
        return names


def _apply_corruption(candle: dict, kind: str, price: str, unix: bool) -> None:
    key = {"M": "mid", "B": "bid", "A": "ask"}[price[0]]
    if kind == "non_numeric":
        candle[key]["o"] = "1.1O3x"
    elif kind == "high_lt_low":
        candle[key]["h"], candle[key]["l"] = candle[key]["l"], candle[key]["h"]
        if candle[key]["h"] == candle[key]["l"]:
            candle[key]["l"] = f"{float(candle[key]['h']) + 1:.5f}"
    elif kind == "off_minute":
        ns = parse_time(candle["time"]) + 17 * NS
        candle["time"] = format_unix(ns) if unix else format_rfc3339(ns)
    elif kind == "missing_field":
        del candle["volume"]
        del candle[key]["c"]


def _alignment(query: dict[str, str]) -> Alignment:
    daily = query.get("dailyAlignment", "17")
    if not daily.isdigit() or not 0 <= int(daily) <= 23:
        raise invalid("dailyAlignment")
    tz = query.get("alignmentTimezone", "America/New_York")
    try:
        from zoneinfo import ZoneInfo

        ZoneInfo(tz)
    except Exception as err:
        raise invalid("alignmentTimezone") from err
    weekly = query.get("weeklyAlignment", "Friday")
    if weekly not in WEEKDAYS:
        raise invalid("weeklyAlignment")
    return Alignment(int(daily), tz, weekly)


def _boolean(query: dict[str, str], name: str, default: bool) -> bool:
    if name not in query:
        return default
    value = query[name].lower()
    if value not in ("true", "false"):
        raise invalid(name)
    return value == "true"


def _count(query: dict[str, str]) -> int | None:
    if "count" not in query:
        return None
    text = query["count"]
    if not text.isdigit() or int(text) < 1:
        raise invalid("count")
    if int(text) > MAX_COUNT:
        raise ApiError(400, "Maximum value for 'count' exceeded")
    return int(text)


def _time(query: dict[str, str], name: str) -> int | None:
    if name not in query:
        return None
    try:
        return parse_time(query[name])
    except ValueError as err:
        raise invalid(name) from err


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "bqx-oanda-fake/1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: no access log on stderr."""

    @property
    def fake(self) -> FakeOanda:
        return self.server.fake  # type: ignore[attr-defined]

    def do_GET(self) -> None:
        fake = self.fake
        request_id = fake.next_request_id()
        url = urlparse(self.path)
        query = {
            k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()
        }
        parts = [unquote(p) for p in url.path.strip("/").split("/")]
        try:
            if self.headers.get("Authorization") != f"Bearer {fake.token}":
                raise ApiError(401, UNAUTHORIZED)
            fmt = self.headers.get("Accept-Datetime-Format", "RFC3339").upper()
            if fmt not in ("RFC3339", "UNIX"):
                raise invalid("Accept-Datetime-Format")
            unix = fmt == "UNIX"
            if fake.latency:
                time.sleep(fake.latency)
            if (
                len(parts) == 4
                and parts[:2] == ["v3", "instruments"]
                and parts[3] == "candles"
            ):
                body, faults = fake.candles(parts[2], query, unix)
            elif (
                len(parts) == 4
                and parts[:2] == ["v3", "accounts"]
                and parts[3] == "pricing"
            ):
                faults = fake.faults.pick(None)
                body = fake.pricing(parts[2], query, unix)
            elif parts[:2] == ["v3", "accounts"] and parts[3:] == ["pricing", "stream"]:
                fake._check_account(parts[2])
                self._stream(fake._instruments(query), unix, request_id)
                return
            else:
                raise ApiError(404, "The requested resource could not be found")
        except ApiError as err:
            payload = json.dumps({"errorMessage": err.message}).encode()
            self._send(err.status, payload, request_id)
            return
        self._answer(body, faults, request_id)

    def _answer(self, body: bytes, faults: list, request_id: str) -> None:
        for fault in faults:
            if fault.kind.isdigit():
                status = int(fault.kind)
                payload = (
                    b""
                    if status == 429
                    else json.dumps(
                        {"errorMessage": "Service unavailable, please try again later"}
                    ).encode()
                )
                self._send(status, payload, request_id)
                return
            if fault.kind == "slow":
                time.sleep(fault.delay)
            if fault.kind == "drop":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if fault.kind == "truncate":
                body = body[: max(1, len(body) // 2)]
        self._send(200, body, request_id)

    def _send(self, status: int, body: bytes, request_id: str) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("RequestID", request_id)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _stream(self, instruments: list[str], unix: bool, request_id: str) -> None:
        """Chunked stream: a PRICE line per changed price (<= 4/s), HEARTBEATs."""
        fake = self.fake
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("RequestID", request_id)
        self.end_headers()
        last: dict[str, tuple] = {}
        beat = time.monotonic()
        fmt_time = format_unix if unix else format_rfc3339
        try:
            while not fake.stopping.is_set():
                now = fake.clock.now()
                for p in fake.prices(instruments, now, unix):
                    p.pop("_t")
                    key = (p["bids"][0]["price"], p["asks"][0]["price"])
                    if last.get(p["instrument"]) != key:
                        last[p["instrument"]] = key
                        self._chunk(json.dumps(p))
                if time.monotonic() - beat >= fake.heartbeat_s:
                    beat = time.monotonic()
                    self._chunk(
                        json.dumps(
                            {"type": "HEARTBEAT", "time": fmt_time(int(now * NS))}
                        )
                    )
                time.sleep(0.25)
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass
        self.close_connection = True

    def _chunk(self, line: str) -> None:
        data = (line + "\n").encode()
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()
