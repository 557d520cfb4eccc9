"""A deterministic market simulator of M1 mid candles for any pair universe.

Model: every currency has a latent log-value (its value in a neutral numeraire) that
follows a correlated random walk: a common risk factor plus an idiosyncratic part,
Student-t shocks (fat tails), intraday volatility seasonality (London and New York
sessions, a quiet roll-over), rare jumps and a weekend gap at the reopen. A pair's
mid is ``exp(v_base - v_quote)``, so every triangle holds up to the tiny per-pair
noise and the quote rounding (5 decimals, 3 for JPY pairs): 0.1-1 bp, like OANDA.
OHLC come from an intra-minute path of ``SUBSTEPS`` points; tick volume is Poisson
with a session-shaped mean. No bars while the market is closed (Friday 17:00 to
Sunday 17:00 New York time) and a small rate of random missing minutes per pair.

All nine currencies are always simulated, so a pair's series depends only on
``(seed, start, end)``, never on which other pairs were asked for.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from bqx.pairs import CURRENCIES, UNIVERSE_36, parse_pair, resolve_pairs
from bqx.timeutil import utc

SUBSTEPS = 8
MISSING_RATE = 0.002
#: Starting value of each currency in US dollars (a January-2024-like level).
USD_VALUE = {
    "EUR": 1.095, "GBP": 1.270, "AUD": 0.670, "NZD": 0.615, "USD": 1.0,
    "CAD": 0.745, "CHF": 1.165, "JPY": 1 / 146.0, "SGD": 0.750,
}  # fmt: skip
#: Loading on the common risk factor (risk-on currencies up, havens down).
RISK_LOADING = {
    "EUR": 0.2, "GBP": 0.3, "AUD": 0.8, "NZD": 0.8, "USD": -0.3,
    "CAD": 0.5, "CHF": -0.6, "JPY": -0.8, "SGD": 0.2,
}  # fmt: skip
#: Idiosyncratic one-minute volatility of each currency, in log units.
IDIO_VOL = {
    "EUR": 0.8e-4, "GBP": 0.9e-4, "AUD": 0.9e-4, "NZD": 1.0e-4, "USD": 0.6e-4,
    "CAD": 0.7e-4, "CHF": 0.9e-4, "JPY": 1.0e-4, "SGD": 0.4e-4,
}  # fmt: skip
FACTOR_VOL = 0.6e-4
T_DOF = 4.0
JUMP_RATE = 2e-5
PAIR_NOISE = 0.2e-4  # 0.2 bp of per-pair, per-bar multiplicative noise


def trading_minutes(start: datetime | str, end: datetime | str) -> pd.DatetimeIndex:
    """UTC minute starts in ``[start, end)`` while the FX market is open.

    The market is closed from Friday 17:00 to Sunday 17:00 America/New_York.
    """
    idx = pd.date_range(utc(start), utc(end), freq="1min", inclusive="left")
    return idx[market_open_mask(idx)]


def market_open_mask(idx: pd.DatetimeIndex) -> np.ndarray:
    """True where the minute starting at ``idx`` lies inside a trading session."""
    ny = idx.tz_convert("America/New_York")
    wd, hour = ny.dayofweek.to_numpy(), ny.hour.to_numpy()
    closed = (wd == 5) | ((wd == 4) & (hour >= 17)) | ((wd == 6) & (hour < 17))
    return ~closed


def _seasonality(idx: pd.DatetimeIndex) -> np.ndarray:
    """Relative volatility by time of day (UTC): sessions up, roll-over quiet."""
    h = idx.hour.to_numpy() + idx.minute.to_numpy() / 60.0
    london = np.exp(-(((h - 9.0) / 2.5) ** 2))
    new_york = np.exp(-(((h - 14.0) / 2.5) ** 2))
    asia = 0.4 * np.exp(-(((h - 2.0) / 3.0) ** 2))
    rollover = 1.0 - 0.6 * np.exp(-(((h - 21.5) / 0.7) ** 2))
    return (0.35 + london + 1.2 * new_york + asia) * rollover


def _t_shocks(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Student-t shocks scaled to unit variance."""
    return rng.standard_t(T_DOF, size=shape) / np.sqrt(T_DOF / (T_DOF - 2.0))


def _currency_paths(
    minutes: pd.DatetimeIndex, rng: np.random.Generator
) -> np.ndarray:
    """Latent log-values, shape (len(minutes) * SUBSTEPS + 1, len(CURRENCIES))."""
    n, k, m = len(minutes), SUBSTEPS, len(CURRENCIES)
    scale = np.repeat(_seasonality(minutes), k) / np.sqrt(k)
    idio = np.array([IDIO_VOL[c] for c in CURRENCIES])
    load = np.array([RISK_LOADING[c] for c in CURRENCIES])
    factor = _t_shocks(rng, (n * k, 1)) * FACTOR_VOL
    steps = (_t_shocks(rng, (n * k, m)) * idio + factor * load) * scale[:, None]
    jumps = rng.random((n, m)) < JUMP_RATE
    steps[::k][jumps] += rng.normal(0.0, 15.0, size=jumps.sum()) * idio[
        np.nonzero(jumps)[1]
    ]
    gap = np.diff(minutes.asi8, prepend=minutes.asi8[:1]) // 60_000_000_000 - 1
    reopen = np.nonzero(gap > 30)[0]
    steps[reopen * k] += (
        rng.normal(size=(len(reopen), m)) * idio * np.sqrt(gap[reopen, None]) * 0.15
    )
    start = np.log([USD_VALUE[c] for c in CURRENCIES])
    return np.vstack([start, start + np.cumsum(steps, axis=0)])


def simulate_bars(
    pairs: list[str] | tuple[str, ...],
    start: datetime | str,
    end: datetime | str,
    seed: int = 7,
) -> pd.DataFrame:
    """Simulated M1 mid candles for ``pairs`` with bar starts in ``[start, end)``.

    Args:
        pairs: pair ids of the 36-pair universe (``EUR_USD``).
        start: first minute (UTC; naive values are taken as UTC).
        end: end of the range, exclusive.
        seed: the random seed; the same arguments give the same bars.

    Returns:
        Columns ``pair, bar_start`` (tz-aware UTC), ``open high low close`` (floats
        rounded to the quote precision), ``volume`` (int64), sorted by pair and time.
    """
    names = resolve_pairs(pairs, UNIVERSE_36)
    minutes = trading_minutes(start, end)
    if len(minutes) == 0:
        return _empty()
    rng = np.random.default_rng(seed)
    paths = _currency_paths(minutes, rng)
    n, k = len(minutes), SUBSTEPS
    season = _seasonality(minutes)
    col = {c: i for i, c in enumerate(CURRENCIES)}
    frames = []
    for name in names:
        pair = parse_pair(name)
        # Per-pair randomness is seeded by the pair, so subsets give the same bars.
        prng = np.random.default_rng([seed, UNIVERSE_36.index(name)])
        log_px = paths[:, col[pair.base]] - paths[:, col[pair.quote]]
        inner = log_px[1:].reshape(n, k)
        opens = log_px[:-1:k]
        highs = np.maximum(opens, inner.max(axis=1))
        lows = np.minimum(opens, inner.min(axis=1))
        noise = prng.normal(0.0, PAIR_NOISE, size=n)
        digits = 3 if pair.is_jpy else 5
        ohlc = [
            np.round(np.exp(x + noise), digits)
            for x in (opens, highs, lows, inner[:, -1])
        ]
        volume = np.maximum(prng.poisson(15.0 + 120.0 * season), 1)
        keep = prng.random(n) >= MISSING_RATE
        frames.append(
            pd.DataFrame(
                {
                    "pair": name,
                    "bar_start": minutes[keep],
                    "open": ohlc[0][keep],
                    "high": ohlc[1][keep],
                    "low": ohlc[2][keep],
                    "close": ohlc[3][keep],
                    "volume": volume[keep].astype("int64"),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _empty() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "pair": pd.Series(dtype="object"),
            "bar_start": pd.Series(dtype="datetime64[ns, UTC]"),
            **{c: pd.Series(dtype="float64") for c in ("open", "high", "low", "close")},
            "volume": pd.Series(dtype="int64"),
        }
    )
