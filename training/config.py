"""Experiment configuration: one small YAML per experiment (qlib style)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from training.splits import Fold, SplitError, explicit_fold, walk_forward

BASE_MODELS = ("tft", "nbeats", "cross_pair")
ENSEMBLES = ("moe", "meta")
_HORIZON = re.compile(r"^(?:fwd_ret|fwd_span_minutes)_(\d+)$|^target_bqx\d+_h(\d+)$")


class ConfigError(ValueError):
    """An experiment configuration that cannot be used."""


def label_horizon(label: str) -> int:
    """Bars ahead of a label of features.md (``fwd_ret_60`` -> 60).

    Raises:
        ConfigError: when ``label`` is not a forward label.
    """
    m = _HORIZON.match(label)
    if not m:
        raise ConfigError(
            f"label {label!r} is not a forward label (fwd_ret_<h> or "
            "target_bqx<w>_h<h>)"
        )
    return int(m.group(1) or m.group(2))


def known_column(label: str) -> str | None:
    """The ``known_`` column of a BQX target (``known_bqx45_h15``), else None."""
    if label.startswith("target_bqx"):
        return "known_" + label.removeprefix("target_")
    return None


@dataclass
class TrainerConfig:
    """Fitting options shared by every model."""

    max_epochs: int = 2
    batch_size: int = 64
    seed: int = 7
    num_threads: int = 1
    limit_train_batches: int | float | None = None


@dataclass
class ExperimentConfig:
    """An experiment: data, label, split, models and ensemble."""

    name: str
    label: str
    features: list[str]
    start: str | None = None
    end: str | None = None
    pairs: list[str] | None = None
    service: str = "tft_v1"
    every: str = "5min"
    known: list[str] = field(
        default_factory=lambda: [
            "minutes_since_open",
            "is_weekend_approach",
            "gap_minutes",
        ]
    )
    encoder_length: int = 12
    segments: dict[str, Any] = field(default_factory=dict)
    models: dict[str, dict[str, Any]] = field(default_factory=lambda: {"tft": {}})
    ensemble: list[str] = field(default_factory=list)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def __post_init__(self) -> None:
        if isinstance(self.trainer, dict):
            self.trainer = TrainerConfig(**self.trainer)
        label_horizon(self.label)
        unknown = set(self.models) - set(BASE_MODELS)
        if unknown or not self.models:
            raise ConfigError(
                f"models must be some of {BASE_MODELS}, got {sorted(self.models)}"
            )
        bad = set(self.ensemble) - set(ENSEMBLES)
        if bad:
            raise ConfigError(
                f"ensemble must be some of {ENSEMBLES}, got {sorted(bad)}"
            )
        if not self.features:
            raise ConfigError("features: list at least one feature column")

    @property
    def horizon(self) -> int:
        """The label horizon in bars."""
        return label_horizon(self.label)

    @property
    def every_minutes(self) -> int:
        """Minutes between rows after resampling."""
        return max(1, int(pd_minutes(self.every)))

    def folds(self) -> list[Fold]:
        """The walk-forward folds of this experiment.

        Raises:
            ConfigError: when the segments are missing or invalid.
        """
        seg = self.segments
        try:
            if "walk_forward" in seg:
                wf = dict(seg["walk_forward"])
                return walk_forward(
                    wf.pop("start", self.start),
                    wf.pop("end", self.end),
                    horizon_minutes=self.horizon,
                    **wf,
                )
            return [explicit_fold(seg, self.horizon)]
        except (SplitError, TypeError) as exc:
            raise ConfigError(f"segments of {self.name}: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for YAML and Ray's train_loop_config)."""
        return asdict(self)


def pd_minutes(every: str) -> float:
    """Minutes in a pandas duration string (``5min`` -> 5)."""
    import pandas as pd

    try:
        return pd.Timedelta(every).total_seconds() / 60.0
    except ValueError as exc:
        raise ConfigError(f"every: not a duration: {every!r}") from exc


def load_config(path: str | Path) -> ExperimentConfig:
    """Read an experiment YAML.

    Raises:
        ConfigError: when the file is missing, not YAML or has unknown keys.
    """
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read config {p}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {p} is not valid YAML: {exc}") from exc
    return config_from_dict(raw, source=str(p))


def config_from_dict(raw: Any, source: str = "<dict>") -> ExperimentConfig:
    """Build a config from plain data, with a clear error on unknown keys."""
    if not isinstance(raw, dict):
        raise ConfigError(f"config {source} must be a mapping")
    try:
        return ExperimentConfig(**raw)
    except TypeError as exc:
        raise ConfigError(f"config {source}: {exc}") from exc
