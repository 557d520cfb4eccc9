"""Switchable faults of the OANDA fake.

A :class:`Fault` fires on matching candle/pricing requests: after ``after``
matching requests, on every ``every``-th one, ``times`` times (None: forever).
Kinds:

- ``429``, ``500``, ``503`` (any HTTP status as text): answer that status.
- ``slow``: sleep ``delay`` seconds before answering (beyond the client timeout).
- ``drop``: close the connection without an answer.
- ``truncate``: send the JSON body cut in half (with a matching Content-Length).
- ``duplicate``: repeat some candles of the page.
- ``shuffle``: return the page's candles out of order.
- ``wrong_instrument``: name another instrument in the response body.

``rate_limit`` on the server adds OANDA's request-rate rule: more than N requests
in any second get 429.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

PAGE_KINDS = ("duplicate", "shuffle", "wrong_instrument")
KINDS = ("slow", "drop", "truncate", *PAGE_KINDS)


@dataclass
class Fault:
    """One fault rule; see the module docstring."""

    kind: str
    times: int | None = 1
    every: int = 1
    after: int = 0
    pair: str | None = None
    delay: float = 2.0
    seen: int = 0
    fired: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS and not (self.kind.isdigit() and len(self.kind) == 3):
            raise ValueError(
                f"unknown fault kind {self.kind!r}: use {KINDS} or a status"
            )

    def matches(self, pair: str | None) -> bool:
        """Count a request and tell whether this fault fires on it."""
        if self.pair is not None and pair != self.pair:
            return False
        self.seen += 1
        if self.seen <= self.after or (self.seen - self.after - 1) % self.every:
            return False
        if self.times is not None and self.fired >= self.times:
            return False
        self.fired += 1
        return True


@dataclass
class FaultPlan:
    """The faults switched on in a fake, thread-safe."""

    faults: list[Fault] = field(default_factory=list)
    rate_limit: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _recent: deque = field(default_factory=deque)

    def add(self, kind: str, **kwargs) -> Fault:
        """Switch a fault on (see :class:`Fault` for the arguments)."""
        fault = Fault(str(kind), **kwargs)
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        """Switch every fault off, the rate limit included."""
        with self._lock:
            self.faults.clear()
            self.rate_limit = None
            self._recent.clear()

    def pick(self, pair: str | None) -> list[Fault]:
        """The faults that fire on this request (each matching rule is counted)."""
        with self._lock:
            fired = [f for f in self.faults if f.matches(pair)]
            if self.rate_limit:
                now = time.monotonic()
                while self._recent and self._recent[0] <= now - 1.0:
                    self._recent.popleft()
                if len(self._recent) >= self.rate_limit:
                    fired.insert(0, Fault("429", times=None))
                else:
                    self._recent.append(now)
            return fired
