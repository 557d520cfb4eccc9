"""Each base model trains on simulated data, its loss falls, and a checkpoint
reload gives identical forecasts."""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import pytest

from tests.training.conftest import experiment
from training.data import feature_columns, known_columns, prepare_frame
from training.datasets import model_rows
from training.models import base_model
from training.models.common import DataSpec, mean_loss
from training.train import forecasts, lightning_trainer


def fit(name, frame, epochs=2, tmp_path=None):
    exp = experiment({name: {}}, epochs=epochs)
    prep = prepare_frame(frame, exp)
    fold = exp.folds()[0]
    feats, known = feature_columns(prep, exp), known_columns(prep, exp)
    rows = model_rows(prep, fold, feats + known)
    spec = DataSpec(feats, known, exp.encoder_length, exp.horizon, exp.every_minutes)
    module = base_model(name)
    ds = module.datasets(rows, fold, spec)
    pl.seed_everything(7)
    model = module.build(ds["train"], {})
    loss_fn = getattr(module, "mean_loss", mean_loss)
    eval_loader = module.loader(ds["train"], 256, False)
    before = loss_fn(model, eval_loader)
    trainer = lightning_trainer(epochs, ray=False)
    trainer.fit(model, module.loader(ds["train"], 64, True))
    after = loss_fn(model, eval_loader)
    return module, model, trainer, ds, rows, before, after


@pytest.mark.parametrize("name", ["tft", "nbeats", "cross_pair"])
def test_loss_falls_and_checkpoint_reload_is_identical(name, planted_frame, tmp_path):
    module, model, trainer, ds, rows, before, after = fit(name, planted_frame)
    assert after < before
    preds = forecasts(module, model, ds, rows)
    assert set(preds["segment"]) == {"valid", "test"}
    assert preds["prediction"].notna().all() and preds["event_timestamp"].notna().all()
    ckpt = tmp_path / "m.ckpt"
    trainer.save_checkpoint(ckpt)
    again = forecasts(module, module.load(str(ckpt)), ds, rows)
    np.testing.assert_array_equal(preds["prediction"], again["prediction"])
