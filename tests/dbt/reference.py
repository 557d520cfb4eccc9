"""An independent numpy/pandas implementation of ../shared/docs/features.md.

Written from the contract, not from the dbt SQL: different methods on purpose
(per-window least squares instead of exact running sums, per-window Pearson on
aligned frames, pandas rolling windows), so the two can only agree if both
follow the formulas. Input: bars as the warehouse holds them (pair,
bar_start, open, high, low, close, volume). Output: one DataFrame per mart,
keyed by (pair, bar_start_at), with the mart's feature columns.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

W = [45, 90, 180, 360, 720, 1440, 2880]
REG_W = [45, 90, 180, 360, 720, 1440]
CORR_W = [60, 240, 390]
CSI_W = [60, 240, 1440]
TRI_Z = 180
H = [15, 30, 45, 60, 75, 90, 105]
TARGET_W = [45, 90]
CATEGORIES = ["base_base", "quote_quote", "base_quote", "quote_base"]
NY = "America/New_York"


def category(p: str, o: str) -> str | None:
    """Category of pair ``o`` seen from ``p = B/Q`` (features.md item 6)."""
    b, q = p.split("_")
    ob, oq = o.split("_")
    if p == o or {b, q} == {ob, oq}:
        return None
    if ob == b:
        return "base_base"
    if oq == q:
        return "quote_quote"
    if oq == b:
        return "base_quote"
    if ob == q:
        return "quote_base"
    return None


def prepare(bars: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Bars per pair, sorted by time, prices as float64."""
    out = {}
    for pair, g in bars.groupby("pair"):
        g = g.sort_values("bar_start").reset_index(drop=True)
        frame = pd.DataFrame(
            {
                "bar_start_at": pd.to_datetime(g["bar_start"], utc=True),
                "o": g["open"].astype(float).to_numpy(),
                "h": g["high"].astype(float).to_numpy(),
                "l": g["low"].astype(float).to_numpy(),
                "c": g["close"].astype(float).to_numpy(),
                "v": g["volume"].astype(float).to_numpy(),
            }
        )
        frame["r"] = np.log(frame["c"] / frame["c"].shift(1))
        out[pair] = frame
    return out


def _keyed(pair: str, frame: pd.DataFrame, cols: dict) -> pd.DataFrame:
    df = pd.DataFrame({"pair": pair, "bar_start_at": frame["bar_start_at"]})
    for name, values in cols.items():
        df[name] = np.asarray(values, dtype=float)
    return df


def _concat(parts: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(parts, ignore_index=True)


def features_idx(data, baseline=None) -> pd.DataFrame:
    parts = []
    for pair, f in data.items():
        if baseline is None:
            c0 = f["c"].iloc[0]
        else:
            after = f.loc[f["bar_start_at"] >= pd.Timestamp(baseline), "c"]
            c0 = after.iloc[0] if len(after) else np.nan
        cols = {
            f"{k}_idx": 100 * f[s] / c0
            for k, s in [("close", "c"), ("open", "o"), ("high", "h"), ("low", "l")]
        }
        parts.append(_keyed(pair, f, cols))
    return _concat(parts)


def features_bqx(data) -> pd.DataFrame:
    parts = []
    for pair, f in data.items():
        c = f["c"]
        parts.append(
            _keyed(
                pair, f, {f"bqx_{w}": 100 * (c - c.shift(w)) / c.shift(w) for w in W}
            )
        )
    return _concat(parts)


def features_volatility(data) -> pd.DataFrame:
    parts = []
    for pair, f in data.items():
        cols = {}
        for w in W:
            cols[f"ret_std_{w}"] = f["r"].rolling(w, min_periods=w).std(ddof=1) * 1e4
            hi = f["h"].rolling(w, min_periods=w).max()
            lo = f["l"].rolling(w, min_periods=w).min()
            cols[f"range_{w}"] = 100 * (hi - lo) / f["c"]
        parts.append(_keyed(pair, f, cols))
    return _concat(parts)


def features_vwap(data) -> pd.DataFrame:
    parts = []
    for pair, f in data.items():
        tp = (f["h"] + f["l"] + f["c"]) / 3
        cols = {}
        for w in W:
            sv = f["v"].rolling(w, min_periods=w).sum()
            stpv = (tp * f["v"]).rolling(w, min_periods=w).sum()
            vwap = (stpv / sv).where(sv > 0)
            cols[f"vwap_{w}"] = vwap
            cols[f"vwap_dev_{w}"] = 100 * (f["c"] - vwap) / vwap
        parts.append(_keyed(pair, f, cols))
    return _concat(parts)


def _reg_one(y: np.ndarray, w: int, chunk: int = 4096) -> dict[str, np.ndarray]:
    """Least squares per window (pseudo-inverse of the design matrix)."""
    n = len(y)
    names = ["a", "b", "k", "r2", "rmse", "resid", "quad", "lin", "slope"]
    out = {k: np.full(n, np.nan) for k in names}
    if n < w:
        return out
    x = np.arange(w, dtype=float)
    design = np.column_stack([x**2, x, np.ones(w)])
    pinv = np.linalg.pinv(design)  # (3, w)
    lin_design = np.column_stack([x, np.ones(w)])
    lin_pinv = np.linalg.pinv(lin_design)
    windows = sliding_window_view(y, w)  # row i ends at bar i + w - 1
    for s in range(0, len(windows), chunk):
        win = windows[s : s + chunk]
        ref = win[:, -1:]  # local centring: only k moves
        yc = win - ref
        coef = yc @ pinv.T  # a, b, k - ref
        fitted = coef @ design.T
        resid = yc - fitted
        sse = (resid**2).sum(axis=1)
        dev = yc - yc.mean(axis=1, keepdims=True)
        flat = np.ptp(win, axis=1) == 0
        sst = (dev**2).sum(axis=1)
        idx = np.arange(s, s + len(win)) + w - 1
        a, b, k = coef[:, 0], coef[:, 1], coef[:, 2] + ref[:, 0]
        out["a"][idx] = a
        out["b"][idx] = b
        out["k"][idx] = k
        out["r2"][idx] = np.where(flat, 0.0, 1 - sse / np.where(flat, 1, sst))
        out["rmse"][idx] = np.sqrt(sse / w)
        out["resid"][idx] = resid[:, -1]
        out["quad"][idx] = a * (w - 1) ** 2
        out["lin"][idx] = b * (w - 1)
        out["slope"][idx] = (yc @ lin_pinv.T)[:, 0]
    return out


def features_reg(data) -> pd.DataFrame:
    parts = []
    for pair, f in data.items():
        y = (100 * f["c"] / f["c"].iloc[0]).to_numpy()
        cols = {}
        for w in REG_W:
            for name, values in _reg_one(y, w).items():
                cols[f"reg_{name}_{w}"] = values
        parts.append(_keyed(pair, f, cols))
    return _concat(parts)


def _pearson_windows(x: np.ndarray, y: np.ndarray, w: int) -> np.ndarray:
    out = np.full(len(x), np.nan)
    if len(x) < w:
        return out
    xw, yw = sliding_window_view(x, w), sliding_window_view(y, w)
    xd = xw - xw.mean(axis=1, keepdims=True)
    yd = yw - yw.mean(axis=1, keepdims=True)
    num = (xd * yd).sum(axis=1)
    den = np.sqrt((xd**2).sum(axis=1) * (yd**2).sum(axis=1))
    zero = (np.ptp(xw, axis=1) == 0) | (np.ptp(yw, axis=1) == 0)
    out[w - 1 :] = np.where(zero, np.nan, num / np.where(zero, 1, den))
    return out


def features_corr(data) -> pd.DataFrame:
    pairs = sorted(data)
    returns = {
        p: data[p].loc[data[p]["r"].notna(), ["bar_start_at", "r"]] for p in pairs
    }
    per_link: dict[tuple[str, str], pd.DataFrame] = {}
    for p in pairs:
        for o in pairs:
            if p < o and category(p, o) is not None:
                m = returns[p].merge(
                    returns[o], on="bar_start_at", suffixes=("_p", "_o")
                )
                m = m.sort_values("bar_start_at")
                vals = {
                    w: _pearson_windows(m["r_p"].to_numpy(), m["r_o"].to_numpy(), w)
                    for w in CORR_W
                }
                per_link[(p, o)] = pd.DataFrame(
                    vals, index=m["bar_start_at"].to_numpy()
                )
    parts = []
    for p in pairs:
        f = data[p]
        t = f["bar_start_at"].to_numpy()
        cols = {}
        for w in CORR_W:
            for cat in CATEGORIES:
                series = []
                for o in pairs:
                    if category(p, o) != cat:
                        continue
                    link = per_link[(min(p, o), max(p, o))]
                    series.append(link[w].reindex(t).to_numpy())
                if series:
                    mean = _nanmean(np.vstack(series))
                else:
                    mean = np.full(len(t), np.nan)
                cols[f"corr_{cat}_{w}"] = mean
        parts.append(_keyed(p, f, cols))
    return _concat(parts)


def _nanmean(stack: np.ndarray) -> np.ndarray:
    """Mean of the non-null values per column (SQL avg); nan when none."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(stack, axis=0)


def features_strength(data) -> pd.DataFrame:
    rows = []
    for p, f in data.items():
        b, q = p.split("_")
        ok = f[f["r"].notna()]
        rows.append(pd.DataFrame({"ccy": b, "t": ok["bar_start_at"], "s": ok["r"]}))
        rows.append(pd.DataFrame({"ccy": q, "t": ok["bar_start_at"], "s": -ok["r"]}))
    long = pd.concat(rows).groupby(["ccy", "t"])["s"].mean().reset_index()
    csi = {}
    for ccy, g in long.groupby("ccy"):
        g = g.sort_values("t").set_index("t")["s"]
        csi[ccy] = {w: g.rolling(w, min_periods=w).sum() for w in CSI_W}
    parts = []
    for p, f in data.items():
        b, q = p.split("_")
        t = f["bar_start_at"]
        cols = {}
        for w in CSI_W:
            base = (
                csi[b][w].reindex(t).to_numpy() if b in csi else np.full(len(t), np.nan)
            )
            quote = (
                csi[q][w].reindex(t).to_numpy() if q in csi else np.full(len(t), np.nan)
            )
            cols[f"csi_base_{w}"] = base
            cols[f"csi_quote_{w}"] = quote
            cols[f"csi_spread_{w}"] = base - quote
        parts.append(_keyed(p, f, cols))
    return _concat(parts)


def features_tri(data) -> pd.DataFrame:
    pairs = set(data)
    logc = {
        p: pd.Series(np.log(f["c"].to_numpy()), index=f["bar_start_at"])
        for p, f in data.items()
    }
    ccys = sorted({c for p in pairs for c in p.split("_")})

    def leg(x: str, y: str):
        if f"{x}_{y}" in pairs:
            return logc[f"{x}_{y}"]
        if f"{y}_{x}" in pairs:
            return -logc[f"{y}_{x}"]
        return None

    parts = []
    for p, f in data.items():
        a, c = p.split("_")
        t = f["bar_start_at"]
        errs = []
        for b in ccys:
            if b in (a, c):
                continue
            l1, l2 = leg(a, b), leg(b, c)
            if l1 is None or l2 is None:
                continue
            err = 1e4 * (
                logc[p] - (l1.reindex(t).to_numpy() + l2.reindex(t).to_numpy())
            )
            errs.append(err.to_numpy())
        if errs:
            stack = np.vstack(errs)  # nan where a bar of the triangle is missing
            mean = _nanmean(stack)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                absmax = np.nanmax(np.abs(stack), axis=0)
        else:
            mean = np.full(len(t), np.nan)
            absmax = np.full(len(t), np.nan)
        x = pd.Series(mean)
        valid = x.dropna()
        prev = valid.shift(1)
        mu = prev.rolling(TRI_Z, min_periods=TRI_Z).mean()
        sd = prev.rolling(TRI_Z, min_periods=TRI_Z).std(ddof=1)
        z = ((valid - mu) / sd).where(sd > 0)
        parts.append(
            _keyed(
                p,
                f,
                {
                    "tri_err_mean": mean,
                    "tri_err_absmax": absmax,
                    f"tri_z_{TRI_Z}": z.reindex(x.index).to_numpy(),
                },
            )
        )
    return _concat(parts)


def features_calendar(data) -> pd.DataFrame:
    parts = []
    for p, f in data.items():
        t = pd.DatetimeIndex(f["bar_start_at"])
        local = t.tz_convert(NY).tz_localize(None)
        days_back = (local.dayofweek - 6) % 7  # Sunday is 6
        open_local = (
            local.normalize()
            - pd.to_timedelta(days_back, unit="D")
            + pd.Timedelta(hours=17)
        )
        open_local = open_local.where(
            open_local <= local, open_local - pd.Timedelta(days=7)
        )
        open_utc = open_local.tz_localize(NY).tz_convert("UTC")
        since = (t - open_utc).total_seconds() / 60
        utc = t.tz_convert("UTC")
        weekend = ((utc.dayofweek == 4) & (utc.hour >= 20)) | (utc.dayofweek == 5)
        gap = f["bar_start_at"].diff().dt.total_seconds() / 60 - 1
        parts.append(
            _keyed(
                p,
                f,
                {
                    "minutes_since_open": since,
                    "is_weekend_approach": weekend.astype(float),
                    "gap_minutes": gap,
                },
            )
        )
    return _concat(parts)


def labels_forward(data) -> pd.DataFrame:
    parts = []
    for p, f in data.items():
        c, t = f["c"], f["bar_start_at"]
        n = np.arange(len(f))
        cols = {}
        for h in H:
            cols[f"fwd_ret_{h}"] = 100 * (c.shift(-h) - c) / c
            for w in TARGET_W:
                bqx = 100 * (c - c.shift(w)) / c.shift(w)
                cols[f"target_bqx{w}_h{h}"] = bqx.shift(-h)
                if h < w:
                    base = c.shift(w - h)
                    cols[f"known_bqx{w}_h{h}"] = (100 * (c - base) / base).where(
                        n + h - w >= 0
                    )
            cols[f"fwd_span_minutes_{h}"] = (t.shift(-h) - t).dt.total_seconds() / 60
        parts.append(_keyed(p, f, cols))
    return _concat(parts)


MARTS = {
    "features_idx": features_idx,
    "features_bqx": features_bqx,
    "features_volatility": features_volatility,
    "features_vwap": features_vwap,
    "features_reg": features_reg,
    "features_corr": features_corr,
    "features_strength": features_strength,
    "features_tri": features_tri,
    "features_calendar": features_calendar,
    "labels_forward": labels_forward,
}


def compute_all(bars: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Every mart of features.md from raw bars."""
    data = prepare(bars)
    return {name: fn(data) for name, fn in MARTS.items()}


def compare(
    name: str, got: pd.DataFrame, ref: pd.DataFrame, rtol: float = 1e-6
) -> list[str]:
    """Column-by-column check: same keys, nulls in the same places, and
    |got - ref| <= rtol * max(|ref|, median |ref| of the column). Returns the
    failures as readable lines (empty when all agree)."""
    problems = []
    key = ["pair", "bar_start_at"]
    got = got.copy()
    got["bar_start_at"] = pd.to_datetime(got["bar_start_at"], utc=True)
    got = got.sort_values(key).reset_index(drop=True)
    ref = ref.sort_values(key).reset_index(drop=True)
    if len(got) != len(ref) or not (got[key].values == ref[key].values).all():
        return [f"{name}: keys differ ({len(got)} rows vs {len(ref)} in the reference)"]
    expected_ts = got["bar_start_at"] + pd.Timedelta(minutes=1)
    if not (pd.to_datetime(got["event_timestamp"], utc=True) == expected_ts).all():
        problems.append(f"{name}: event_timestamp != bar_start_at + 1 minute")
    for col in ref.columns:
        if col in key:
            continue
        if col not in got.columns:
            problems.append(f"{name}.{col}: missing in the warehouse")
            continue
        g = pd.to_numeric(got[col].astype("float64"), errors="coerce").to_numpy(
            dtype=float
        )
        r = ref[col].to_numpy(dtype=float)
        g_null, r_null = np.isnan(g), np.isnan(r)
        if (g_null != r_null).any():
            bad = np.flatnonzero(g_null != r_null)
            i = bad[0]
            problems.append(
                f"{name}.{col}: {len(bad)} null mismatches, first at "
                f"{ref['pair'][i]} {ref['bar_start_at'][i]} (got {g[i]}, ref {r[i]})"
            )
            continue
        ok = ~r_null
        if not ok.any():
            continue
        scale = np.maximum(np.abs(r[ok]), np.median(np.abs(r[ok])))
        diff = np.abs(g[ok] - r[ok])
        bad = diff > rtol * scale
        if bad.any():
            i = np.flatnonzero(ok)[np.flatnonzero(bad)[0]]
            problems.append(
                f"{name}.{col}: {int(bad.sum())} values off, first at {ref['pair'][i]} "
                f"{ref['bar_start_at'][i]} (got {g[i]!r}, ref {r[i]!r})"
            )
    return problems
