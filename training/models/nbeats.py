"""N-BEATS on each pair's realized-label history (univariate, shared weights)."""

from __future__ import annotations

import pandas as pd
from pytorch_forecasting import NBeats
from pytorch_forecasting.metrics import RMSE

from training.datasets import decoder_steps, nbeats_datasets
from training.models.common import DataSpec, attach_time, pf_loader, pf_outputs
from training.splits import Fold

DEFAULTS = {
    "stack_types": ["generic"],
    "num_blocks": [1],
    "num_block_layers": [2],
    "widths": [32],
    "sharing": [True],
    "expansion_coefficient_lengths": [8],
    "learning_rate": 3e-3,
    "log_interval": -1,
    "dropout": 0.1,
    "reduce_on_plateau_patience": 1000,
}


def datasets(rows: pd.DataFrame, fold: Fold, spec: DataSpec) -> dict:
    """Datasets of the realized-label series (see :func:`nbeats_datasets`)."""
    steps = decoder_steps(spec.horizon, spec.every_minutes)
    return nbeats_datasets(rows, fold, spec.encoder_length, steps)


def build(train_ds, kwargs: dict) -> NBeats:
    """An N-BEATS network for the dataset's lengths (RMSE loss: MASE would scale by
    the encoder's own target history)."""
    return NBeats.from_dataset(train_ds, loss=RMSE(), **{**DEFAULTS, **kwargs})


loader = pf_loader


def predict(model, ds, rows: pd.DataFrame) -> pd.DataFrame:
    """The last decoder step of each sample, attributed to the forecast row."""
    pred, index = pf_outputs(model, ds)
    out = attach_time(index, rows, offset=1)
    return out.assign(prediction=pred[:, -1].double().numpy())[
        ["pair", "event_timestamp", "prediction"]
    ]


def load(path: str) -> NBeats:
    """An N-BEATS model from a Lightning checkpoint."""
    return NBeats.load_from_checkpoint(path, map_location="cpu")
