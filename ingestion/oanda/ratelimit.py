"""A thread-safe token-bucket rate limiter shared by all request workers."""

from __future__ import annotations

import threading
import time


class RateLimiter:
    """At most ``rate`` acquisitions per second on average, bursts up to ``burst``.

    One instance is shared by every worker of a process, so the total request rate
    stays under OANDA's limit (100 req/s on a persistent connection by default).
    """

    def __init__(self, rate: float = 100.0, burst: float | None = None) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(1.0, rate / 10))
        self._tokens = self.burst
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, sleeping until one is free; returns the seconds waited."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(
                self.burst, self._tokens + (now - self._stamp) * self.rate
            )
            self._stamp = now
            self._tokens -= 1.0
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            time.sleep(wait)
        return wait
