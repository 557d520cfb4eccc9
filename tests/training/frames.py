"""Synthetic training frames for the training tests (real simulator bars).

Features and labels follow features.md (``bqx_45``, ``ret_std_45``, ``fwd_ret_15``,
``fwd_span_minutes_15``) computed with pandas from ``ingestion.simulator`` bars.
``planted`` adds a feature that carries the future: ``signal = fwd_ret_15 + noise``
(a predictable series by construction); without it ``signal`` is pure noise.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ingestion.simulator import simulate_bars

PAIRS = ["EUR_USD", "GBP_USD", "USD_JPY"]


def sim_frame(
    pairs: list[str] = PAIRS,
    start: str = "2024-01-08",
    end: str = "2024-01-11",
    planted: bool = False,
    seed: int = 7,
    h: int = 15,
) -> pd.DataFrame:
    """A Feast-like training frame of simulated bars (one row per pair and bar)."""
    bars = simulate_bars(pairs, start, end, seed=seed)
    rng = np.random.default_rng(seed)
    parts = []
    for pair, g in bars.groupby("pair", sort=True):
        c = g["close"].to_numpy()
        ts = g["bar_start"] + pd.Timedelta(minutes=1)
        cs = pd.Series(c, index=g.index)
        r = np.log(cs / cs.shift(1))
        fwd = 100 * (cs.shift(-h) - cs) / cs
        span = (g["bar_start"].shift(-h) - g["bar_start"]).dt.total_seconds() / 60
        noise = rng.normal(size=len(g))
        scale = np.nanstd(fwd.to_numpy())
        signal = fwd + 0.5 * scale * noise if planted else pd.Series(noise * scale)
        parts.append(
            pd.DataFrame(
                {
                    "pair": pair,
                    "event_timestamp": ts.to_numpy(),
                    "bqx_45": (100 * (cs - cs.shift(45)) / cs.shift(45)).to_numpy(),
                    "ret_std_45": (r.rolling(45).std() * 1e4).to_numpy(),
                    "signal": np.asarray(signal, dtype=float),
                    f"fwd_ret_{h}": fwd.to_numpy(),
                    f"fwd_span_minutes_{h}": span.to_numpy(),
                }
            )
        )
    frame = pd.concat(parts, ignore_index=True)
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    return frame
