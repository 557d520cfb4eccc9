"""Ensembles: fitted on validation-window forecasts only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.training.conftest import experiment
from training.ensemble import fit_ensembles
from training.models.meta import RidgeMeta
from training.models.moe import MixtureOfExperts


def _preds(n=400, seed=3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a, b, x = rng.normal(size=n), rng.normal(size=n), rng.normal(size=n)
    y = 0.7 * a + 0.2 * b + 0.05 * rng.normal(size=n)
    seg = np.where(np.arange(n) < n // 2, "valid", "test")
    return pd.DataFrame({"tft": a, "cross_pair": b, "signal": x, "target": y,
                         "segment": seg, "fold": 0})


def test_meta_recovers_the_stacking_weights():
    p = _preds()
    meta = RidgeMeta(["tft", "cross_pair"], alpha=0.0).fit(p)
    np.testing.assert_allclose(meta.coef, [0.7, 0.2], atol=0.02)
    assert abs(meta.intercept) < 0.02


def test_ensembles_never_see_test_targets():
    p = _preds()
    exp = experiment({"tft": {}, "cross_pair": {}}, ensemble=["meta", "moe"])
    out, info, states = fit_ensembles(p, exp, ["signal"])
    shuffled = p.copy()
    test = shuffled["segment"] == "test"
    shuffled.loc[test, "target"] = 1e6  # poisoned test targets
    out2, info2, _ = fit_ensembles(shuffled, exp, ["signal"])
    assert info["meta_f0"]["coef"] == info2["meta_f0"]["coef"]
    np.testing.assert_array_equal(out["moe"], out2["moe"])
    moe = MixtureOfExperts.from_state(states["moe_f0"])
    np.testing.assert_array_equal(moe.predict(p), out["moe"])


def test_moe_beats_equal_weights_when_experts_differ_by_regime():
    rng = np.random.default_rng(5)
    n = 600
    regime = rng.integers(0, 2, size=n).astype(float)
    a, b = rng.normal(size=n), rng.normal(size=n)
    y = np.where(regime == 1, a, b)
    frame = pd.DataFrame({"regime": regime, "a": a, "b": b, "target": y})
    moe = MixtureOfExperts(["regime"], ["a", "b"], epochs=300).fit(frame)
    mse = np.mean((moe.predict(frame) - y) ** 2)
    assert mse < 0.25 * np.mean(((a + b) / 2 - y) ** 2)
    assert moe.weights(frame[frame["regime"] == 1])["a"].mean() == pytest.approx(
        1.0, abs=0.1
    )
