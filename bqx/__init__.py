"""bqx: a forex feature platform (OANDA M1 bars -> dbt features -> Feast -> Ray).

The heavy parts load lazily: ``import bqx`` is cheap; ``bqx.store()`` and
``bqx.training_frame()`` import Feast when first called.
"""

from __future__ import annotations

__version__ = "0.1.0"


def store(settings=None):
    """The Feast ``FeatureStore`` of the configured deployment."""
    from bqx.features import store as _store

    return _store(settings)


def training_frame(pairs, start, end, service="tft_v1", every="1min", settings=None):
    """A point-in-time training frame (pandas) from ``get_historical_features``."""
    from bqx.features import training_frame as _training_frame

    return _training_frame(pairs, start, end, service=service, every=every, settings=settings)


__all__ = ["store", "training_frame", "__version__"]
