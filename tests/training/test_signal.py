"""Leakage guard: a planted predictable signal is found and beats the baselines
with a significant IC; on pure noise the same pipeline finds nothing."""

from __future__ import annotations

import pytest

from tests.training.test_models import fit
from training.metrics import baseline_forecasts, metric_table
from training.train import forecasts


def scores(name, frame):
    module, model, _, ds, rows, _, _ = fit(name, frame, epochs=3)
    preds = forecasts(module, model, ds, rows)
    test = rows[rows["segment"] == "test"].merge(
        preds[preds["segment"] == "test"].drop(columns="segment"),
        on=["pair", "event_timestamp"],
    )
    test = test.join(baseline_forecasts(test)).dropna(subset=["persistence"])
    return metric_table(test, ["prediction", "zero", "persistence"])


# TFT on the planted signal is checked through Ray in test_train_ray.py.
@pytest.mark.parametrize(("name", "max_ratio"), [("cross_pair", 0.9)])
def test_planted_signal_beats_baselines(name, max_ratio, planted_frame):
    table = scores(name, planted_frame)
    row = table.loc["prediction"]
    assert row["rmse_ratio"] < max_ratio
    assert row["ic_t"] > 5 and row["ic_mean"] > 0.2
    assert row["da_low"] > 0.5


@pytest.mark.parametrize("name", ["cross_pair", "tft"])
def test_pure_noise_is_not_predictable(name, noise_frame):
    table = scores(name, noise_frame)
    row = table.loc["prediction"]
    assert row["rmse_ratio"] > 0.98
    assert abs(row["ic_t"]) < 3
    assert row["da_low"] < 0.5 < row["da_high"]
