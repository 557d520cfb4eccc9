"""The feature families of features.md: mart, columns and types (one table).

Every source, view and service is generated from this table, so a family is
registered once, the same way on every deployment.
"""

from __future__ import annotations

from feast.types import Bool, Float64, Int64

WINDOWS = (45, 90, 180, 360, 720, 1440, 2880)
HORIZONS = (15, 30, 45, 60, 75, 90, 105)


def _floats(*names: str) -> dict:
    return {n: Float64 for n in names}


FAMILIES: dict[str, dict] = {
    "bqx": {
        "mart": "features_bqx",
        "fields": _floats(*(f"bqx_{w}" for w in WINDOWS)),
        "description": "Backward momentum: 100 * (c[n] - c[n-w]) / c[n-w].",
    },
}

LABELS = {
    "mart": "labels_forward",
    "fields": {
        **_floats(*(f"fwd_ret_{h}" for h in HORIZONS)),
        **_floats(*(f"target_bqx{w}_h{h}" for w in (45, 90) for h in HORIZONS)),
        **_floats(
            *(f"known_bqx{w}_h{h}" for w in (45, 90) for h in HORIZONS if h < w)
        ),
        **{f"fwd_span_minutes_{h}": Int64 for h in HORIZONS},
    },
}

__all__ = ["FAMILIES", "LABELS", "WINDOWS", "HORIZONS", "Bool", "Int64"]
