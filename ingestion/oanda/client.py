"""The OANDA v20 client: oandapyV20 with retries, timeouts and a shared rate limit.

The host comes from settings: ``practice`` and ``live`` use oandapyV20's own
environments, ``custom`` registers ``BQX_OANDA_URL`` (e.g. the local fake) as an
extra entry of ``oandapyV20.oandapyV20.TRADING_ENVIRONMENTS``. Each worker thread
gets its own keep-alive session; all of them share one :class:`RateLimiter`.
429, 5xx, timeouts, connection resets and cut-off bodies are retried with
exponential backoff and jitter (tenacity), a bounded number of times; 400 and 401
are not retried.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import requests
from oandapyV20 import API
from oandapyV20 import oandapyV20 as v20_module
from oandapyV20.endpoints.instruments import InstrumentsCandles
from oandapyV20.endpoints.pricing import PricingInfo, PricingStream
from oandapyV20.exceptions import V20Error
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from bqx.settings import Settings
from ingestion.oanda.ratelimit import RateLimiter

log = logging.getLogger(__name__)
CUSTOM_ENV = "bqx-custom"
TRANSIENT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    json.JSONDecodeError,
)


class OandaError(Exception):
    """A problem talking to OANDA, with a one-line message for the user."""


class OandaConfigError(OandaError):
    """Missing or invalid OANDA settings."""


class OandaRequestError(OandaError):
    """A request OANDA refused (4xx other than 429) or that kept failing.

    Attributes:
        status: the last HTTP status (None when no answer came back).
        detail: the last error text.
    """

    def __init__(self, message: str, status: int | None, detail: str) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with jitter."""

    attempts: int = 6
    initial: float = 0.2
    maximum: float = 5.0
    jitter: float = 0.2


def is_transient(exc: BaseException) -> bool:
    """True for the failures worth retrying: 429, 5xx, timeouts, resets, cut bodies."""
    if isinstance(exc, V20Error):
        return exc.code == 429 or exc.code >= 500
    return isinstance(exc, TRANSIENT_ERRORS)


def describe(exc: BaseException) -> tuple[int | None, str]:
    """(HTTP status or None, short text) of a request failure."""
    if isinstance(exc, V20Error):
        text = exc.msg or ""
        try:
            text = json.loads(text).get("errorMessage", text)
        except (ValueError, AttributeError):
            pass
        return exc.code, (text or "no body").strip()[:200]
    if isinstance(exc, json.JSONDecodeError):
        return None, f"invalid JSON in the answer ({exc.msg})"
    if isinstance(exc, requests.Timeout):
        return None, "timed out"
    return None, type(exc).__name__ + (f": {exc}"[:160] if str(exc) else "")


def environment_name(settings: Settings) -> str:
    """The oandapyV20 environment for ``settings`` (registers ``custom`` URLs)."""
    if settings.oanda_env != "custom":
        return settings.oanda_env
    url = settings.oanda_url.rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise OandaConfigError(
            "BQX_OANDA_URL must be an http(s) URL when BQX_OANDA_ENV=custom, "
            f"got {url!r}"
        )
    name = f"{CUSTOM_ENV}:{url}"  # one entry per URL: clients may differ
    v20_module.TRADING_ENVIRONMENTS[name] = {"api": url, "stream": url}
    return name


class OandaClient:
    """Candles and pricing requests with retries, timeouts and a shared rate limit."""

    def __init__(
        self,
        settings: Settings,
        limiter: RateLimiter | None = None,
        timeout: float = 10.0,
        retry: RetryPolicy = RetryPolicy(),
    ) -> None:
        token = settings.oanda_token.get_secret_value()
        if not token:
            raise OandaConfigError("no OANDA token: set BQX_OANDA_TOKEN")
        self._token = token
        self.environment = environment_name(settings)
        self.account = settings.oanda_account
        self.limiter = limiter or RateLimiter(100.0)
        self.timeout = timeout
        self.retry = retry
        self.requests = 0
        self.retries = 0
        self._local = threading.local()
        self._lock = threading.Lock()
        self._apis: list[API] = []

    def _api(self) -> API:
        api = getattr(self._local, "api", None)
        if api is None:
            api = API(
                access_token=self._token,
                environment=self.environment,
                headers={"Accept-Datetime-Format": "UNIX"},
                request_params={"timeout": self.timeout},
            )
            self._local.api = api
            with self._lock:
                self._apis.append(api)
        return api

    def close(self) -> None:
        """Close every keep-alive session opened by this client."""
        with self._lock:
            for api in self._apis:
                api.close()
            self._apis.clear()

    def candles(self, pair: str, params: dict[str, str], what: str) -> dict:
        """``GET /v3/instruments/{pair}/candles`` (times come back as UNIX seconds).

        Args:
            pair: instrument id.
            params: query parameters.
            what: words naming the request in errors (pair and time range).

        Raises:
            OandaRequestError: a 4xx answer, or transient failures beyond the retries.
        """
        return self._call(lambda: InstrumentsCandles(pair, params=dict(params)), what)

    def pricing(self, pairs: list[str], since: str | None = None) -> dict:
        """``GET /v3/accounts/{account}/pricing`` for ``pairs``."""
        if not self.account:
            raise OandaConfigError("no OANDA account: set BQX_OANDA_ACCOUNT")
        params = {"instruments": ",".join(pairs)}
        if since:
            params["since"] = since
        return self._call(
            lambda: PricingInfo(self.account, params=params),
            "pricing " + ",".join(pairs),
        )

    def price_stream(self, pairs: list[str]) -> Iterator[dict]:
        """``GET /v3/accounts/{account}/pricing/stream``: its messages, one by one.

        One keep-alive session of its own (closed when the iterator is); the
        client timeout bounds the wait for each line (OANDA sends a HEARTBEAT
        every 5 s). Not retried here: the caller reconnects.

        Raises:
            OandaRequestError: the stream was refused (e.g. 400, 401).
        """
        if not self.account:
            raise OandaConfigError("no OANDA account: set BQX_OANDA_ACCOUNT")
        api = API(
            access_token=self._token,
            environment=self.environment,
            headers={"Accept-Datetime-Format": "UNIX"},
            request_params={"timeout": self.timeout},
        )
        endpoint = PricingStream(self.account, params={"instruments": ",".join(pairs)})
        self.limiter.acquire()
        with self._lock:
            self.requests += 1
        try:
            yield from api.request(endpoint)
        except V20Error as exc:
            status, detail = describe(exc)
            raise OandaRequestError(
                f"pricing stream {','.join(pairs)}: refused (HTTP {status}, {detail})",
                status,
                detail,
            ) from exc
        finally:
            api.close()

    def _call(self, make_endpoint, what: str) -> dict:
        last: list[BaseException] = []

        def attempt() -> dict:
            self.limiter.acquire()
            with self._lock:
                self.requests += 1
            try:
                return self._api().request(make_endpoint())
            except BaseException as exc:
                last[:] = [exc]
                raise

        retrying = Retrying(
            stop=stop_after_attempt(self.retry.attempts),
            wait=wait_exponential_jitter(
                initial=self.retry.initial,
                max=self.retry.maximum,
                jitter=self.retry.jitter,
            ),
            retry=retry_if_exception(is_transient),
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except (V20Error, *TRANSIENT_ERRORS, requests.RequestException) as exc:
            status, detail = describe(exc)
            tries = (
                ""
                if not is_transient(exc)
                else f" after {self.retry.attempts} attempts"
            )
            code = f"HTTP {status}" if status else "no HTTP status"
            raise OandaRequestError(
                f"{what}: request failed{tries} (last: {code}, {detail})",
                status,
                detail,
            ) from exc

    def _log_retry(self, state: RetryCallState) -> None:
        with self._lock:
            self.retries += 1
        exc = state.outcome.exception() if state.outcome else None
        status, detail = describe(exc) if exc else (None, "")
        log.warning(
            "retrying after %s %s (attempt %d)", status, detail, state.attempt_number
        )
