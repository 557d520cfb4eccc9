"""Forecast metrics and honest baselines.

Baselines (all known at the forecast time):
- ``zero``: the random walk, forecast 0;
- ``persistence``: the last realized value of the same label (``realized``);
- ``known``: for BQX targets, the part of the target already observed (``known_``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

BASELINES = ("zero", "persistence", "known")


def baseline_forecasts(frame: pd.DataFrame) -> pd.DataFrame:
    """Baseline forecast columns for rows with ``realized`` (and maybe ``known``)."""
    out = pd.DataFrame(index=frame.index)
    out["zero"] = 0.0
    out["persistence"] = frame["realized"].astype("float64")
    if "known" in frame.columns:
        out["known"] = frame["known"].astype("float64")
    return out


def rmse(pred: np.ndarray, y: np.ndarray) -> float:
    """Root mean squared error."""
    pred, y = np.asarray(pred, float), np.asarray(y, float)
    return float(np.sqrt(np.mean((pred - y) ** 2))) if len(y) else float("nan")


def directional_accuracy(
    pred: np.ndarray, y: np.ndarray, n_boot: int = 1000, seed: int = 7
) -> tuple[float, float, float]:
    """Share of rows with ``sign(pred) == sign(y)`` (rows with ``y == 0`` left out;
    a zero forecast never hits) and its 95% bootstrap interval.

    Returns:
        ``(accuracy, low, high)``; NaNs when no row has ``y != 0`` or every
        forecast is 0 (the random walk has no direction).
    """
    pred, y = np.asarray(pred, float), np.asarray(y, float)
    keep = y != 0
    if not np.any(pred != 0):  # a forecast of no direction has no accuracy
        return (float("nan"),) * 3
    hits = (np.sign(pred[keep]) == np.sign(y[keep])).astype(float)
    if not len(hits):
        return (float("nan"),) * 3
    rng = np.random.default_rng(seed)
    boot = hits[rng.integers(0, len(hits), size=(n_boot, len(hits)))].mean(axis=1)
    lo, hi = np.quantile(boot, [0.025, 0.975])
    return float(hits.mean()), float(lo), float(hi)


def ic_series(frame: pd.DataFrame, column: str, min_pairs: int = 3) -> pd.Series:
    """Spearman correlation across pairs at each timestamp of ``column`` vs target.

    Timestamps with fewer than ``min_pairs`` pairs or a constant side are left out.
    """
    out = {}
    for ts, g in frame.groupby("event_timestamp", sort=True):
        if len(g) < min_pairs:
            continue
        p, y = g[column].to_numpy(float), g["target"].to_numpy(float)
        if np.ptp(p) == 0 or np.ptp(y) == 0:
            continue
        out[ts] = stats.spearmanr(p, y).statistic
    return pd.Series(out, dtype="float64", name=column)


def ic_summary(ic: pd.Series) -> tuple[float, float, int]:
    """Mean IC, its t-statistic (mean / (std / sqrt(n))) and the count."""
    n = int(ic.notna().sum())
    if n < 2:
        return float("nan"), float("nan"), n
    sd = ic.std(ddof=1)
    t = float(ic.mean() / (sd / np.sqrt(n))) if sd > 0 else float("nan")
    return float(ic.mean()), t, n


def metric_table(
    frame: pd.DataFrame, forecasts: list[str], stride: int = 1
) -> pd.DataFrame:
    """Metrics of each forecast column against ``target`` over ``frame``.

    Columns: ``rmse``, ``rmse_ratio`` (to the best baseline present), ``da``,
    ``da_low``, ``da_high``, ``ic_mean``, ``ic_t``, ``ic_n``, ``ic_t_indep``
    (the t-statistic over every ``stride``-th timestamp only: with a label longer
    than the row step, consecutive ICs share most of their label window and the
    plain t-statistic overstates the evidence), ``n``.
    """
    y = frame["target"].to_numpy(float)
    rows = {}
    for col in forecasts:
        da, lo, hi = directional_accuracy(frame[col].to_numpy(float), y)
        ic = ic_series(frame, col)
        ic_mean, ic_t, ic_n = ic_summary(ic)
        rows[col] = {
            "rmse": rmse(frame[col].to_numpy(float), y),
            "da": da,
            "da_low": lo,
            "da_high": hi,
            "ic_mean": ic_mean,
            "ic_t": ic_t,
            "ic_n": ic_n,
            "ic_t_indep": ic_summary(ic.iloc[::stride])[1],
            "n": len(y),
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    base = [b for b in BASELINES if b in table.index]
    best = table.loc[base, "rmse"].min() if base else np.nan
    table.insert(1, "rmse_ratio", table["rmse"] / best)
    return table


def per_pair_table(frame: pd.DataFrame, forecasts: list[str]) -> pd.DataFrame:
    """RMSE, its ratio to the pair's best baseline and directional accuracy, per
    pair (the IC is cross-sectional, so it is only reported overall)."""
    out = []
    for pair, g in frame.groupby("pair", sort=True):
        y = g["target"].to_numpy(float)
        base = [b for b in BASELINES if b in g.columns]
        best = min(rmse(g[b], y) for b in base) if base else np.nan
        for col in forecasts:
            da, lo, hi = directional_accuracy(g[col].to_numpy(float), y)
            r = rmse(g[col], y)
            out.append(
                {"pair": pair, "forecast": col, "rmse": r, "rmse_ratio": r / best,
                 "da": da, "da_low": lo, "da_high": hi, "n": len(y)}
            )
    return pd.DataFrame(out)
