"""pytorch-forecasting ``TimeSeriesDataSet``s for one walk-forward fold.

Group = pair; static categoricals = pair, base and quote currency; calendar reals and
the feature columns are declared *known* because every sample has a one-step decoder
whose row is the forecast time itself: its features are observed at that moment (bar
end), so they are not future values. The target never enters the encoder as an
input, and the target normaliser is one global standardiser fitted on training
targets, so no label value later than the forecast time reaches a sample.

Training sets hold only rows before the training window's end; validation and test
sets are built with ``TimeSeriesDataSet.from_dataset`` (the training scalers, never
a second fit) over rows before their window's end, and filtered so that every
decoder row lies in that window (the encoder may look back into earlier windows:
features are past information).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from pytorch_forecasting import TimeSeriesDataSet
from pytorch_forecasting.data.encoders import TorchNormalizer

from training.splits import Fold, assign

STATIC = ["pair", "base", "quote"]


def model_rows(
    prepared: pd.DataFrame, fold: Fold, reals: list[str]
) -> pd.DataFrame:
    """Rows whose reals are all present, with ``time_idx`` and ``segment``.

    ``time_idx`` counts a pair's usable rows (0, 1, ...); ``segment`` is the fold
    window of the row (see :func:`training.splits.assign`). A missing target is
    filled with 0 and can then only appear as encoder context, never as a target.
    A pair's first rows, before any of its labels is realized (``realized`` is
    null: a frame that starts after the features' warm-up), are left out.
    """
    rows = prepared.dropna(subset=[*reals, "realized"]).copy()
    rows["segment"] = assign(rows["event_timestamp"], rows["label_end"], fold)
    rows["target"] = rows["target"].fillna(0.0)
    rows["time_idx"] = rows.groupby("pair").cumcount().astype("int64")
    return rows.reset_index(drop=True)


def _fitted_normalizer(values: pd.Series) -> TorchNormalizer:
    norm = TorchNormalizer(method="standard", center=True)
    norm.fit(torch.tensor(values.to_numpy(dtype="float64")))
    return norm


def _keys(rows: pd.DataFrame, segment: str, offset: int) -> set[tuple[str, int]]:
    sel = rows[rows["segment"] == segment]
    return set(zip(sel["pair"], sel["time_idx"] + offset, strict=True))


def _only(ds: TimeSeriesDataSet, keys: set[tuple[str, int]]) -> TimeSeriesDataSet:
    def keep(index: pd.DataFrame) -> np.ndarray:
        pairs = index["pair"].astype(str)
        t = index["time_idx_first_prediction"]
        return np.array([k in keys for k in zip(pairs, t, strict=True)], dtype=bool)

    return ds.filter(keep)


def tft_datasets(
    rows: pd.DataFrame,
    fold: Fold,
    features: list[str],
    known: list[str],
    encoder_length: int,
) -> dict[str, TimeSeriesDataSet]:
    """Train/valid/test datasets for TFT (and any covariate model).

    Args:
        rows: output of :func:`model_rows`.
        fold: the walk-forward fold.
        features: feature columns (declared known reals, see module doc).
        known: calendar columns.
        encoder_length: encoder rows per sample.

    Returns:
        ``{"train", "valid", "test"}`` datasets (a window without targets is left
        out).
    """
    train_rows = rows[rows["event_timestamp"] < fold.train.end]
    target_norm = _fitted_normalizer(
        train_rows.loc[train_rows["segment"] == "train", "target"]
    )
    base = TimeSeriesDataSet(
        train_rows,
        time_idx="time_idx",
        target="target",
        group_ids=["pair"],
        max_encoder_length=encoder_length,
        min_encoder_length=encoder_length,
        max_prediction_length=1,
        static_categoricals=STATIC,
        time_varying_known_reals=list(known) + list(features),
        time_varying_unknown_reals=["realized"],
        target_normalizer=target_norm,
        add_relative_time_idx=True,
        add_encoder_length=False,
    )
    out = {"train": _only(base, _keys(rows, "train", 0))}
    for w in (fold.valid, fold.test):
        keys = _keys(rows, w.name, 0)
        if not keys:
            continue
        part = rows[rows["event_timestamp"] < w.end]
        ds = TimeSeriesDataSet.from_dataset(base, part, stop_randomization=True)
        out[w.name] = _only(ds, keys)
    return out


def decoder_steps(horizon: int, every_minutes: int) -> int:
    """Rows ahead at which a label of ``horizon`` bars is realized."""
    return max(1, math.ceil(horizon / every_minutes))


def nbeats_datasets(
    rows: pd.DataFrame, fold: Fold, encoder_length: int, steps: int
) -> dict[str, TimeSeriesDataSet]:
    """Datasets for N-BEATS over each pair's realized-label series.

    N-BEATS sees only a univariate history, so its series is ``realized`` (each
    value known at its row's time). A forecast made at row ``n`` is the decoder's
    last step, ``realized[n + steps]``, i.e. the label of row ``n``; the sample is
    kept when row ``n`` (``time_idx_first_prediction - 1``) lies in the window.
    """
    rows = rows.assign(series=rows["realized"].astype("float64"))
    train_rows = rows[rows["event_timestamp"] < fold.train.end]
    base = TimeSeriesDataSet(
        train_rows,
        time_idx="time_idx",
        target="series",
        group_ids=["pair"],
        max_encoder_length=encoder_length,
        min_encoder_length=encoder_length,
        max_prediction_length=steps,
        min_prediction_length=steps,
        time_varying_unknown_reals=["series"],
        target_normalizer=_fitted_normalizer(train_rows["series"]),
        randomize_length=None,
        add_relative_time_idx=False,
        add_target_scales=False,
        add_encoder_length=False,
    )
    out = {"train": _only(base, _keys(rows, "train", 1) & _train_ok(rows, fold, steps))}
    for w in (fold.valid, fold.test):
        keys = _keys(rows, w.name, 1)
        if not keys:
            continue
        part = rows[rows["event_timestamp"] < w.end + pd.Timedelta(days=7)]
        ds = TimeSeriesDataSet.from_dataset(base, part, stop_randomization=True)
        out[w.name] = _only(ds, keys)
    return out


def _train_ok(rows: pd.DataFrame, fold: Fold, steps: int) -> set[tuple[str, int]]:
    """Training samples whose whole decoder lies before the training end."""
    ok = rows[rows["event_timestamp"] < fold.train.end]
    last = ok.groupby("pair")["time_idx"].max()
    return {
        (p, t + 1)
        for p, t in zip(ok["pair"], ok["time_idx"], strict=True)
        if t + steps <= last[p]
    }
