"""Forecasting models: base models (``tft``, ``nbeats``, ``cross_pair``) trained by
Lightning, and ensembles (``moe``, ``meta``) fitted on out-of-sample predictions.

Each base-model module exposes the same functions: ``datasets(rows, fold, spec)``,
``build(train_ds, kwargs)``, ``loader(ds, batch_size, train)``,
``predict(model, ds, rows)`` and ``load(path)``.
"""

from __future__ import annotations

from types import ModuleType


def base_model(name: str) -> ModuleType:
    """The module of a base model by name."""
    from training.models import cross_pair, nbeats, tft

    modules = {"tft": tft, "nbeats": nbeats, "cross_pair": cross_pair}
    try:
        return modules[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {sorted(modules)}") from None
