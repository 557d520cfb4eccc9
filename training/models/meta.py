"""Stacked meta-learner: ridge regression on out-of-sample base forecasts.

Fitted only on predictions the base models made for rows they were not trained on
(the validation window), then applied to the test window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass
class RidgeMeta:
    """``y ~ b0 + sum_k w_k * forecast_k`` with an L2 penalty (intercept free)."""

    columns: list[str]
    alpha: float = 1.0
    coef: np.ndarray | None = None
    intercept: float = 0.0

    def fit(self, frame: pd.DataFrame) -> RidgeMeta:
        """Fit on ``frame[columns]`` against ``frame['target']``."""
        x = frame[self.columns].to_numpy(float)
        y = frame["target"].to_numpy(float)
        xm, ym = x.mean(axis=0), y.mean()
        xc, yc = x - xm, y - ym
        # Penalty scaled by the forecasts' variance so alpha is unit-free.
        scale = np.mean(np.var(x, axis=0)) or 1.0
        a = xc.T @ xc + self.alpha * len(y) * scale * np.eye(len(self.columns))
        self.coef = np.linalg.solve(a, xc.T @ yc)
        self.intercept = float(ym - xm @ self.coef)
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Meta forecasts for ``frame``."""
        if self.coef is None:
            raise RuntimeError("RidgeMeta.predict before fit")
        return frame[self.columns].to_numpy(float) @ self.coef + self.intercept

    def to_dict(self) -> dict:
        """Plain data for the run folder."""
        return {
            "columns": self.columns,
            "alpha": self.alpha,
            "coef": None if self.coef is None else self.coef.tolist(),
            "intercept": self.intercept,
        }
