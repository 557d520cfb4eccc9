"""Temporal Fusion Transformer: one global model over all pairs, quantile loss."""

from __future__ import annotations

import pandas as pd
import torch
from pytorch_forecasting import TemporalFusionTransformer
from pytorch_forecasting.metrics import QuantileLoss

from training.datasets import tft_datasets
from training.models.common import DataSpec, attach_time, pf_loader, pf_outputs
from training.splits import Fold

DEFAULTS = {
    "hidden_size": 16,
    "attention_head_size": 2,
    "dropout": 0.1,
    "hidden_continuous_size": 8,
    "learning_rate": 3e-3,
    "log_interval": -1,
    "reduce_on_plateau_patience": 1000,
}


def datasets(rows: pd.DataFrame, fold: Fold, spec: DataSpec) -> dict:
    """Train/valid/test ``TimeSeriesDataSet``s (see :mod:`training.datasets`)."""
    return tft_datasets(rows, fold, spec.features, spec.known, spec.encoder_length)


def build(train_ds, kwargs: dict) -> TemporalFusionTransformer:
    """A TFT sized for the dataset, with a quantile loss."""
    params = {**DEFAULTS, **kwargs}
    return TemporalFusionTransformer.from_dataset(
        train_ds, loss=QuantileLoss(), **params
    )


loader = pf_loader


def predict(model, ds, rows: pd.DataFrame) -> pd.DataFrame:
    """Median forecasts with ``pair`` and ``event_timestamp``."""
    pred, index = pf_outputs(model, ds)
    out = attach_time(index, rows, offset=0)
    return out.assign(prediction=pred[:, 0].double().numpy())[
        ["pair", "event_timestamp", "prediction"]
    ]


def load(path: str) -> TemporalFusionTransformer:
    """A TFT from a Lightning checkpoint."""
    return TemporalFusionTransformer.load_from_checkpoint(path, map_location="cpu")


@torch.no_grad()
def interpret(model: TemporalFusionTransformer, ds, batch_size: int = 256) -> dict:
    """Variable importance (static, encoder, decoder) and mean attention by encoder
    position, summed over a dataset with ``interpret_output`` and normalised."""
    model.eval()
    total: dict[str, torch.Tensor] = {}
    for x, _ in pf_loader(ds, batch_size, train=False):
        out = model(x)
        parts = model.interpret_output(out, reduction="sum")
        for key in ("attention", "static_variables", "encoder_variables",
                    "decoder_variables"):
            total[key] = total.get(key, 0) + parts[key].detach()

    def norm(values: torch.Tensor, names: list[str]) -> dict[str, float]:
        v = values / values.sum().clamp_min(1e-12)
        return {n: float(w) for n, w in zip(names, v, strict=True)}

    attention = total["attention"] / total["attention"].sum().clamp_min(1e-12)
    return {
        "static": norm(total["static_variables"], model.static_variables),
        "encoder": norm(total["encoder_variables"], model.encoder_variables),
        "decoder": norm(total["decoder_variables"], model.decoder_variables),
        "attention": [float(a) for a in attention],
    }
