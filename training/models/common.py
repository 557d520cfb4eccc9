"""Helpers shared by the pytorch-forecasting models."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch
from torch.utils.data import DataLoader


@dataclass
class DataSpec:
    """What a model needs to know about the data of one fold."""

    features: list[str]
    known: list[str]
    encoder_length: int
    horizon: int
    every_minutes: int


def pf_loader(ds, batch_size: int, train: bool) -> DataLoader:
    """A pytorch-forecasting dataloader (single process, deterministic order)."""
    return ds.to_dataloader(train=train, batch_size=batch_size, num_workers=0)


@torch.no_grad()
def pf_outputs(model, ds, batch_size: int = 256) -> tuple[torch.Tensor, pd.DataFrame]:
    """Point predictions (median for quantile losses) and the decoded index."""
    model.eval()
    preds, index = [], []
    for x, _ in pf_loader(ds, batch_size, train=False):
        out = model(x)
        preds.append(model.to_prediction(out))
        index.append(ds.x_to_index(x))
    return torch.cat(preds), pd.concat(index, ignore_index=True)


def attach_time(index: pd.DataFrame, rows: pd.DataFrame, offset: int) -> pd.DataFrame:
    """Map ``(pair, time_idx - offset)`` back to the rows' ``event_timestamp``."""
    key = index.assign(
        time_idx=index["time_idx"] - offset, pair=index["pair"].astype(str)
    )
    return key.merge(
        rows[["pair", "time_idx", "event_timestamp"]],
        on=["pair", "time_idx"],
        how="left",
    )


@torch.no_grad()
def mean_loss(model, loader) -> float:
    """The model's own loss averaged over a dataloader (eval mode)."""
    model.eval()
    total, n = 0.0, 0
    for x, y in loader:
        out = model(x)
        loss = model.loss(out["prediction"], y)
        b = len(y[0]) if isinstance(y, (tuple, list)) else len(y)
        total += float(loss) * b
        n += b
    return total / max(n, 1)
