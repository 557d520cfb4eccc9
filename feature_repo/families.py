"""The families of features.md: mart, columns and types, in one table.

Sources, views and services are generated from this table, so a family is
registered once, the same way on every deployment.
"""

from __future__ import annotations

from feast.types import Bool, Float64, Int64

WINDOWS = (45, 90, 180, 360, 720, 1440, 2880)
REG_WINDOWS = (45, 90, 180, 360, 720, 1440)
CORR_WINDOWS = (60, 240, 390)
CSI_WINDOWS = (60, 240, 1440)
CATEGORIES = ("base_base", "quote_quote", "base_quote", "quote_base")
HORIZONS = (15, 30, 45, 60, 75, 90, 105)
TARGET_WINDOWS = (45, 90)
REG_COLUMNS = ("a", "b", "k", "r2", "rmse", "resid", "quad", "lin", "slope")


def _floats(names) -> dict:
    return {n: Float64 for n in names}


FAMILIES: dict[str, dict] = {
    "idx": {
        "mart": "features_idx",
        "fields": _floats(["close_idx", "open_idx", "high_idx", "low_idx"]),
        "description": "Prices indexed to 100 at the pair's baseline close.",
    },
    "bqx": {
        "mart": "features_bqx",
        "fields": _floats(f"bqx_{w}" for w in WINDOWS),
        "description": "Backward momentum: 100 * (c[n] - c[n-w]) / c[n-w].",
    },
    "volatility": {
        "mart": "features_volatility",
        "fields": _floats(
            f"{k}_{w}" for w in WINDOWS for k in ("ret_std", "range")
        ),
        "description": "Std of one-bar log returns (bp) and high-low range (%).",
    },
    "vwap": {
        "mart": "features_vwap",
        "fields": _floats(f"{k}_{w}" for w in WINDOWS for k in ("vwap", "vwap_dev")),
        "description": "Volume-weighted typical price and the close's deviation (%).",
    },
    "reg": {
        "mart": "features_reg",
        "fields": _floats(f"reg_{c}_{w}" for w in REG_WINDOWS for c in REG_COLUMNS),
        "description": "Rolling quadratic and linear regression of close_idx.",
    },
    "corr": {
        "mart": "features_corr",
        "fields": _floats(f"corr_{c}_{w}" for w in CORR_WINDOWS for c in CATEGORIES),
        "description": "Mean Pearson correlation with the pairs of each category.",
    },
    "strength": {
        "mart": "features_strength",
        "fields": _floats(
            f"csi_{k}_{w}" for w in CSI_WINDOWS for k in ("base", "quote", "spread")
        ),
        "description": "Currency strength of base and quote, and their spread.",
    },
    "tri": {
        "mart": "features_tri",
        "fields": _floats(["tri_err_mean", "tri_err_absmax", "tri_z_180"]),
        "description": "Triangulation error against synthetic crosses (bp).",
    },
    "calendar": {
        "mart": "features_calendar",
        "fields": {
            "minutes_since_open": Int64,
            "is_weekend_approach": Bool,
            "gap_minutes": Int64,
        },
        "description": "Minutes since the weekly open, weekend approach, bar gap.",
    },
}

LABELS = {
    "mart": "labels_forward",
    "fields": {
        **_floats(f"fwd_ret_{h}" for h in HORIZONS),
        **_floats(f"target_bqx{w}_h{h}" for w in TARGET_WINDOWS for h in HORIZONS),
        **_floats(
            f"known_bqx{w}_h{h}" for w in TARGET_WINDOWS for h in HORIZONS if h < w
        ),
        **{f"fwd_span_minutes_{h}": Int64 for h in HORIZONS},
    },
    "description": "Forward targets and their naive known_ baselines (never online).",
}
