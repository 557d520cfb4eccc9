"""Mixture of experts: a gating network over the features weights the base models'
forecasts; trained on validation-window (out-of-sample) predictions only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn


class Gate(nn.Module):
    """Softmax weights over ``k`` experts from a feature vector."""

    def __init__(self, n_features: int, n_experts: int, hidden: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_features, hidden), nn.Tanh(), nn.Linear(hidden, n_experts)
        )

    def forward(self, x: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
        """The gated forecast ``sum_k softmax(g(x))_k * expert_k``."""
        w = torch.softmax(self.net(x), dim=-1)
        return (w * experts).sum(dim=-1)


class MixtureOfExperts:
    """Fit and apply the gate on pandas frames (features + expert columns)."""

    def __init__(
        self,
        features: list[str],
        experts: list[str],
        hidden: int = 16,
        epochs: int = 200,
        lr: float = 1e-2,
        seed: int = 7,
    ) -> None:
        self.features, self.experts = features, experts
        self.epochs, self.lr, self.seed = epochs, lr, seed
        torch.manual_seed(seed)
        self.gate = Gate(len(features), len(experts), hidden)
        self.mean = np.zeros(len(features))
        self.std = np.ones(len(features))
        self.y_scale = 1.0

    def _x(self, frame: pd.DataFrame) -> torch.Tensor:
        x = (frame[self.features].to_numpy(float) - self.mean) / self.std
        return torch.tensor(np.nan_to_num(x), dtype=torch.float32)

    def fit(self, frame: pd.DataFrame) -> MixtureOfExperts:
        """Full-batch Adam on the MSE of the gated forecast."""
        self.mean = frame[self.features].mean().to_numpy(float)
        sd = frame[self.features].std().to_numpy(float)
        self.std = np.where(sd > 0, sd, 1.0)
        self.y_scale = float(frame["target"].std() or 1.0)
        x = self._x(frame)
        e = torch.tensor(frame[self.experts].to_numpy(float) / self.y_scale).float()
        y = torch.tensor(frame["target"].to_numpy(float) / self.y_scale).float()
        torch.manual_seed(self.seed)
        opt = torch.optim.Adam(self.gate.parameters(), lr=self.lr)
        for _ in range(self.epochs):
            opt.zero_grad()
            loss = ((self.gate(x, e) - y) ** 2).mean()
            loss.backward()
            opt.step()
        return self

    @torch.no_grad()
    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Gated forecasts for ``frame``."""
        e = torch.tensor(frame[self.experts].to_numpy(float)).float()
        return self.gate(self._x(frame), e).double().numpy()

    def state(self) -> dict:
        """Everything needed to rebuild the fitted mixture (for ``torch.save``)."""
        return {
            "features": self.features, "experts": self.experts,
            "hidden": self.gate.net[0].out_features, "gate": self.gate.state_dict(),
            "mean": self.mean, "std": self.std, "y_scale": self.y_scale,
        }

    @classmethod
    def from_state(cls, state: dict) -> MixtureOfExperts:
        """Inverse of :meth:`state`."""
        moe = cls(state["features"], state["experts"], hidden=state["hidden"])
        moe.gate.load_state_dict(state["gate"])
        moe.mean, moe.std, moe.y_scale = state["mean"], state["std"], state["y_scale"]
        return moe

    @torch.no_grad()
    def weights(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The gate's weights per row (for the report)."""
        w = torch.softmax(self.gate.net(self._x(frame)), dim=-1).numpy()
        return pd.DataFrame(w, columns=self.experts, index=frame.index)
