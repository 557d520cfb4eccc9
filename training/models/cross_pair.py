"""A cross-pair attention model: at each timestamp every pair attends to all others.

Input: the feature vector of every pair at one timestamp (standardised with the
training rows' mean and std); each pair's vector plus a pair embedding becomes a
token, a Transformer encoder layer mixes the tokens across pairs (absent pairs are
masked), and a linear head gives each pair's forecast. Loss: MSE over the pairs that
have a target in the window.
"""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from training.models.common import DataSpec
from training.splits import Fold

DEFAULTS = {
    "d_model": 32, "heads": 2, "layers": 1, "dropout": 0.1, "learning_rate": 3e-3
}


class PairPanel(Dataset):
    """One item per timestamp: features ``[P, F]``, targets ``[P]``, masks ``[P]``."""

    def __init__(
        self,
        rows: pd.DataFrame,
        segment: str,
        pairs: list[str],
        reals: list[str],
        mean: np.ndarray,
        std: np.ndarray,
    ) -> None:
        sel = rows[rows["segment"] == segment]
        stamps = np.sort(sel["event_timestamp"].unique())
        self.timestamps = pd.DatetimeIndex(stamps)
        self.pairs = pairs
        t_pos = {t: i for i, t in enumerate(stamps)}
        p_pos = {p: i for i, p in enumerate(pairs)}
        known = sel[sel["pair"].isin(p_pos)]
        ti = known["event_timestamp"].map(t_pos).to_numpy()
        pi = known["pair"].map(p_pos).to_numpy()
        x = np.zeros((len(stamps), len(pairs), len(reals)), dtype="float32")
        y = np.zeros((len(stamps), len(pairs)), dtype="float32")
        m = np.zeros((len(stamps), len(pairs)), dtype=bool)
        x[ti, pi] = (known[reals].to_numpy(dtype="float64") - mean) / std
        y[ti, pi] = known["target"].to_numpy(dtype="float64")
        m[ti, pi] = True
        self.x, self.y, self.mask = map(torch.from_numpy, (x, y, m))

    def __len__(self) -> int:
        return len(self.timestamps)

    def __getitem__(self, i: int):
        return self.x[i], (self.y[i], self.mask[i])


class CrossPairModel(pl.LightningModule):
    """Attention across pairs at one timestamp (see module docstring)."""

    def __init__(
        self,
        pairs: list[str],
        reals: list[str],
        mean: list[float],
        std: list[float],
        target_std: float,
        d_model: int = 32,
        heads: int = 2,
        layers: int = 1,
        dropout: float = 0.1,
        learning_rate: float = 3e-3,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.embed = nn.Linear(len(reals), d_model)
        self.pair_embedding = nn.Embedding(len(pairs), d_model)
        layer = nn.TransformerEncoderLayer(
            d_model, heads, dim_feedforward=2 * d_model, dropout=dropout,
            batch_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Forecasts ``[B, P]`` (in target units) from features ``[B, P, F]``."""
        ids = torch.arange(x.shape[1], device=x.device)
        h = self.embed(x) + self.pair_embedding(ids)[None]
        # A timestamp with no pair at all would make attention undefined.
        pad = ~mask
        pad = pad & ~pad.all(dim=1, keepdim=True)
        h = self.encoder(h, src_key_padding_mask=pad)
        return self.head(h).squeeze(-1) * self.hparams.target_std

    def loss(self, pred: torch.Tensor, y) -> torch.Tensor:
        """Masked MSE in standardised target units."""
        target, mask = y
        err = ((pred - target) / self.hparams.target_std) ** 2
        return (err * mask).sum() / mask.sum().clamp_min(1)

    def training_step(self, batch, _):
        x, (target, mask) = batch
        loss = self.loss(self(x, mask), (target, mask))
        self.log("train_loss", loss, prog_bar=False, batch_size=len(x))
        return loss

    def validation_step(self, batch, _):
        x, (target, mask) = batch
        loss = self.loss(self(x, mask), (target, mask))
        self.log("val_loss", loss, batch_size=len(x))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.learning_rate)


def _stats(rows: pd.DataFrame, reals: list[str]) -> tuple[np.ndarray, np.ndarray]:
    train = rows.loc[rows["segment"] == "train", reals].to_numpy(dtype="float64")
    std = train.std(axis=0)
    return train.mean(axis=0), np.where(std > 0, std, 1.0)


def datasets(rows: pd.DataFrame, fold: Fold, spec: DataSpec) -> dict:
    """One panel per window; scalers from training rows only."""
    reals = list(spec.known) + list(spec.features)
    pairs = sorted(rows["pair"].unique())
    mean, std = _stats(rows, reals)
    out = {}
    for w in fold.windows:
        if (rows["segment"] == w.name).any():
            out[w.name] = PairPanel(rows, w.name, pairs, reals, mean, std)
    train = out["train"]
    train.reals, train.mean, train.std = reals, mean, std
    target = rows.loc[rows["segment"] == "train", "target"]
    train.target_std = float(target.std() or 1.0)
    return out


def build(train_ds: PairPanel, kwargs: dict) -> CrossPairModel:
    """A model for the panel's pairs and reals."""
    return CrossPairModel(
        pairs=list(train_ds.pairs),
        reals=list(train_ds.reals),
        mean=[float(v) for v in train_ds.mean],
        std=[float(v) for v in train_ds.std],
        target_std=train_ds.target_std,
        **{**DEFAULTS, **kwargs},
    )


def loader(ds: PairPanel, batch_size: int, train: bool) -> DataLoader:
    """Timestamps in batches (shuffled with the torch seed when training)."""
    return DataLoader(ds, batch_size=batch_size, shuffle=train, num_workers=0)


@torch.no_grad()
def predict(model: CrossPairModel, ds: PairPanel, rows: pd.DataFrame) -> pd.DataFrame:
    """Each pair's forecast at every timestamp where it has a row in the window."""
    model.eval()
    pred = model(ds.x, ds.mask).double().numpy()
    t, p = np.nonzero(ds.mask.numpy())
    return pd.DataFrame(
        {
            "pair": np.asarray(ds.pairs)[p],
            "event_timestamp": ds.timestamps[t],
            "prediction": pred[t, p],
        }
    )


def live_panel(model: CrossPairModel, latest: pd.DataFrame) -> PairPanel:
    """A one-timestamp panel of each pair's latest row, scaled like training."""
    hp = model.hparams
    rows = latest.assign(segment="live", target=0.0)
    rows = rows.assign(event_timestamp=rows["event_timestamp"].max())
    return PairPanel(rows, "live", list(hp.pairs), list(hp.reals),
                     np.asarray(hp.mean), np.asarray(hp.std))


def mean_loss(model: CrossPairModel, loader_: DataLoader) -> float:
    """Masked MSE averaged over a loader."""
    model.eval()
    with torch.no_grad():
        losses = [float(model.loss(model(x, y[1]), y)) for x, y in loader_]
    return float(np.mean(losses))


def load(path: str) -> CrossPairModel:
    """A cross-pair model from a Lightning checkpoint."""
    return CrossPairModel.load_from_checkpoint(path, map_location="cpu")
