"""Ensembles over base-model forecasts, fitted on validation-window rows only."""

from __future__ import annotations

import pandas as pd

from training.config import ExperimentConfig
from training.models.meta import RidgeMeta
from training.models.moe import MixtureOfExperts


def fit_ensembles(
    preds: pd.DataFrame, exp: ExperimentConfig, features: list[str]
) -> tuple[pd.DataFrame, dict, dict]:
    """Add ``moe``/``meta`` columns, fitted per fold on its ``valid`` rows.

    Returns the forecasts, a JSON-able summary (meta coefficients, mean gate
    weights) and the fitted mixtures' states.

    Rows of the valid window get the in-sample ensemble fit; only ``test`` rows
    are out-of-sample for the ensembles (the evaluation uses test rows only).
    """
    base = [m for m in exp.models if m in preds.columns]
    info: dict = {}
    states: dict = {}
    if not exp.ensemble or not base:
        return preds, info, states
    out = []
    for fold, g in preds.groupby("fold", sort=True):
        g = g.copy()
        ok = g[base].notna().all(axis=1)
        valid = g[ok & (g["segment"] == "valid")]
        if valid.empty:
            for name in exp.ensemble:
                g[name] = float("nan")
            out.append(g)
            continue
        if "meta" in exp.ensemble:
            meta = RidgeMeta(base, alpha=1.0).fit(valid)
            g.loc[ok, "meta"] = meta.predict(g[ok])
            info[f"meta_f{fold}"] = meta.to_dict()
        if "moe" in exp.ensemble:
            moe = MixtureOfExperts(features, base, seed=exp.trainer.seed).fit(valid)
            g.loc[ok, "moe"] = moe.predict(g[ok])
            info[f"moe_f{fold}"] = {
                "experts": base,
                "mean_weights": moe.weights(g[ok]).mean().to_dict(),
            }
            states[f"moe_f{fold}"] = moe.state()
        out.append(g)
    return pd.concat(out, ignore_index=True), info, states
