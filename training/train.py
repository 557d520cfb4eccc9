"""Training on Ray Train: one ``TorchTrainer`` run per base model and fold.

Shape (Ray Train's Lightning guide): :func:`train_func` runs on every worker (a
Lightning ``Trainer`` with ``RayDDPStrategy``, ``RayLightningEnvironment``,
``RayTrainReportCallback`` and ``prepare_trainer``); :func:`run_experiment` builds
``ScalingConfig``/``RunConfig`` and launches it. Each worker's final report carries
the model's Lightning checkpoint and its validation/test forecasts; the driver then
reloads that checkpoint, checks it reproduces the forecasts, fits the ensembles
(``moe``, ``meta``) on validation-window forecasts and stores everything in the run
folder: ``config.yaml``, ``predictions.parquet``, ``ensembles.json`` and Ray's
``<model>_f<fold>/checkpoint_*`` folders.
"""

from __future__ import annotations

import io
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
import yaml

from training.config import ExperimentConfig, config_from_dict
from training.data import feature_columns, known_columns, prepare_frame
from training.datasets import model_rows
from training.models.common import DataSpec
from training.splits import Fold, Window

if TYPE_CHECKING:  # pyarrow only where runs are stored (not in a plain fit)
    from training.storage import RunStore


class TrainError(RuntimeError):
    """A training run that could not complete."""


def fold_to_dict(fold: Fold) -> dict:
    """Plain data for Ray's config."""
    return {
        "index": fold.index,
        **{w.name: [w.start.isoformat(), w.end.isoformat()] for w in fold.windows},
    }


def fold_from_dict(d: dict) -> Fold:
    """Inverse of :func:`fold_to_dict`."""
    wins = [Window(n, pd.Timestamp(d[n][0]), pd.Timestamp(d[n][1])) for n in
            ("train", "valid", "test")]
    return Fold(d["index"], *wins)


def lightning_trainer(max_epochs: int, ray: bool, **kwargs):
    """A Lightning ``Trainer`` (Ray's strategy/environment/callback when ``ray``,
    the only case that imports Ray); ``callbacks`` are added to Ray's."""
    import lightning.pytorch as pl
    import torch

    accelerator = kwargs.pop("accelerator", "auto")
    on_gpu = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    callbacks = list(kwargs.pop("callbacks", None) or [])
    common = dict(
        max_epochs=max_epochs,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        # bit-exact on the CPU (checkpoint reloads are compared exactly); CUDA has
        # no deterministic kernels for some of TFT's backward ops (LSTM, index_add)
        deterministic="warn" if on_gpu else True,
        **kwargs,
    )
    if not ray:
        return pl.Trainer(accelerator=accelerator, devices=1, callbacks=callbacks,
                          enable_checkpointing=False, **common)
    from ray.train.lightning import (
        RayDDPStrategy,
        RayLightningEnvironment,
        RayTrainReportCallback,
        prepare_trainer,
    )

    trainer = pl.Trainer(
        accelerator=accelerator,
        devices="auto",
        strategy=RayDDPStrategy(find_unused_parameters=True),
        plugins=[RayLightningEnvironment()],
        callbacks=[*callbacks, RayTrainReportCallback()],
        enable_checkpointing=False,
        **common,
    )
    return prepare_trainer(trainer)


def train_func(config: dict) -> None:
    """Per-worker loop: for each base model, datasets, ``Trainer.fit`` (reporting a
    checkpoint per epoch), then one final report whose checkpoint holds every
    model's ``<model>.ckpt`` and their forecasts (``predictions.parquet``)."""
    import lightning.pytorch as pl
    import ray.train

    from training.models import base_model

    exp = config_from_dict(config["experiment"])
    torch.set_num_threads(exp.trainer.num_threads)
    fold = fold_from_dict(config["fold"])
    rows: pd.DataFrame = config["rows"]
    spec = DataSpec(**config["spec"])
    rank0 = ray.train.get_context().get_world_rank() == 0
    fitted, metrics = {}, {}
    for name in exp.models:
        pl.seed_everything(exp.trainer.seed, workers=True)
        module = base_model(name)
        ds = module.datasets(rows, fold, spec)
        model = module.build(ds["train"], exp.models[name])
        trainer = lightning_trainer(
            exp.trainer.max_epochs,
            ray=True,
            limit_train_batches=exp.trainer.limit_train_batches,
        )
        val = (module.loader(ds["valid"], exp.trainer.batch_size, False)
               if "valid" in ds else None)
        train = module.loader(ds["train"], exp.trainer.batch_size, True)
        trainer.fit(model, train, val)
        metrics.update({f"{name}/{k}": float(v)
                        for k, v in trainer.callback_metrics.items()})
        fitted[name] = (module, model, trainer, ds)
    metrics["final"] = 1.0
    with tempfile.TemporaryDirectory() as tmp:
        # save_checkpoint is collective under DDP: every rank calls it, rank 0 writes
        for name, (_, _, trainer, _) in fitted.items():
            trainer.save_checkpoint(f"{tmp}/{name}.ckpt", weights_only=False)
        if not rank0:
            ray.train.report(metrics, checkpoint=None)
            return
        parts = [
            forecasts(module, model, ds, rows).assign(model=name)
            for name, (module, model, _, ds) in fitted.items()
        ]
        pd.concat(parts).to_parquet(f"{tmp}/predictions.parquet", index=False)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def forecasts(module, model, ds: dict, rows: pd.DataFrame) -> pd.DataFrame:
    """A model's forecasts for its valid and test windows (``segment`` column),
    computed on the CPU (the model is moved there after training)."""
    model = model.to("cpu")
    parts = [
        module.predict(model, ds[name], rows).assign(segment=name)
        for name in ("valid", "test")
        if name in ds
    ]
    return pd.concat(parts, ignore_index=True)


@dataclass
class RunResult:
    """What a training run produced."""

    run: str
    uri: str
    predictions: pd.DataFrame
    metrics: dict = field(default_factory=dict)
    checkpoints: dict = field(default_factory=dict)
    seconds: float = 0.0


def _ray_run(
    exp: ExperimentConfig,
    fold: Fold,
    rows: pd.DataFrame,
    spec: DataSpec,
    store: RunStore,
    run: str,
    workers: int,
    gpu: bool,
):
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    project_root = str(Path(__file__).resolve().parents[1])
    trainer = TorchTrainer(
        train_func,
        train_loop_config={
            "experiment": exp.to_dict(),
            "fold": fold_to_dict(fold),
            "rows": rows,
            "spec": spec.__dict__,
        },
        scaling_config=ScalingConfig(
            num_workers=workers,
            use_gpu=gpu,
            resources_per_worker={"CPU": 1, **({"GPU": 1} if gpu else {})},
        ),
        run_config=RunConfig(
            name=f"fold{fold.index}",
            storage_path=f"{store.root}/{run}",
            storage_filesystem=store.fs,
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            worker_runtime_env={"env_vars": {"PYTHONPATH": project_root}},
        ),
    )
    try:
        result = trainer.fit()
    except Exception as exc:  # Ray wraps worker errors in several types
        raise TrainError(f"fold {fold.index}: Ray training failed: {exc}") from exc
    if result.checkpoint is None:
        raise TrainError(f"fold {fold.index}: no checkpoint was reported")
    return result


def _check_reload(result, exp, rows, fold, spec) -> pd.DataFrame:
    """The workers' forecasts, after checking each reloaded checkpoint gives the
    same numbers.

    Raises:
        TrainError: when a reloaded model's forecasts differ.
    """
    from training.models import base_model

    with result.checkpoint.as_directory() as d:
        worker = pd.read_parquet(f"{d}/predictions.parquet")
        for name in exp.models:
            module = base_model(name)
            again = forecasts(module, module.load(f"{d}/{name}.ckpt"),
                              module.datasets(rows, fold, spec), rows)
            mine = worker[worker["model"] == name]
            if len(mine) != len(again) or not np.allclose(
                mine["prediction"], again["prediction"], rtol=1e-5, atol=1e-7
            ):
                raise TrainError(
                    f"{name}: the reloaded checkpoint changes the forecasts"
                )
    return worker


def run_experiment(
    exp: ExperimentConfig,
    frame: pd.DataFrame,
    store: RunStore,
    run: str | None = None,
    workers: int = 1,
    gpu: bool = False,
    progress=None,
) -> RunResult:
    """Train every base model on every fold through Ray, then the ensembles.

    Args:
        exp: the experiment.
        frame: its training frame (from :func:`training.data.load_frame`).
        store: the runs storage.
        run: run name (default ``<experiment>-<UTC time>``).
        workers: Ray Train workers (``ScalingConfig.num_workers``).
        gpu: one GPU per worker.
        progress: optional callable ``(message)`` for the CLI's progress.

    Returns:
        The run's name, location, forecasts and final metrics.

    Raises:
        TrainError: when a run fails or a reloaded checkpoint disagrees with the
            worker's forecasts.
    """
    from training.ensemble import fit_ensembles

    t0 = time.perf_counter()
    run = run or f"{exp.name}-{pd.Timestamp.utcnow():%Y%m%dT%H%M%S}"
    prepared = prepare_frame(frame, exp)
    feats, known = feature_columns(prepared, exp), known_columns(prepared, exp)
    spec = DataSpec(feats, known, exp.encoder_length, exp.horizon, exp.every_minutes)
    store.put_bytes(run, "config.yaml", yaml.safe_dump(exp.to_dict()).encode())
    store.put_frame(run, "prepared.parquet", prepared)
    all_preds, metrics, ckpts = [], {}, {}
    for fold in exp.folds():
        rows = model_rows(prepared, fold, feats + known)
        if not (rows["segment"] == "train").any():
            raise TrainError(f"fold {fold.index}: no training rows in {fold.train}")
        table = rows.loc[rows["segment"].isin(["valid", "test"]),
                         _keep_cols(rows, feats)].copy()
        if progress:
            progress(f"fold {fold.index}: {', '.join(exp.models)}")
        res = _ray_run(exp, fold, rows, spec, store, run, workers, gpu)
        worker = _check_reload(res, exp, rows, fold, spec)
        metrics[f"fold{fold.index}"] = dict(res.metrics)
        ckpts[f"fold{fold.index}"] = res.checkpoint.path
        for model in exp.models:
            mine = worker.loc[worker["model"] == model,
                              ["pair", "event_timestamp", "prediction"]]
            table = table.merge(mine.rename(columns={"prediction": model}),
                                on=["pair", "event_timestamp"], how="left")
        table["fold"] = fold.index
        all_preds.append(table)
    preds = pd.concat(all_preds, ignore_index=True)
    preds, ens, states = fit_ensembles(preds, exp, feats)
    if states:
        buf = io.BytesIO()
        torch.save(states, buf)
        store.put_bytes(run, "moe.pt", buf.getvalue())
    store.put_frame(run, "predictions.parquet", preds)
    store.put_bytes(run, "ensembles.json", json.dumps(ens, indent=2).encode())
    store.put_bytes(
        run, "train_metrics.json",
        json.dumps({"metrics": metrics, "checkpoints": ckpts, "features": feats,
                    "known": known}, indent=2, default=str).encode(),
    )
    return RunResult(run, f"{store.uri}/{run}", preds, metrics, ckpts,
                     time.perf_counter() - t0)


def _keep_cols(rows: pd.DataFrame, feats: list[str]) -> list[str]:
    base = ["pair", "event_timestamp", "segment", "target", "realized", "label_end"]
    return base + (["known"] if "known" in rows.columns else []) + feats


def load_run_config(store: RunStore, run: str) -> ExperimentConfig:
    """The experiment config saved with a run."""
    raw = yaml.safe_load(io.BytesIO(store.get_bytes(run, "config.yaml")))
    return config_from_dict(raw, source=f"{run}/config.yaml")


def load_model(store: RunStore, run: str, fold: int, name: str):
    """A trained base model of a run, from its fold's Ray checkpoint.

    Raises:
        RunNotFoundError: when the run has no checkpoint of that model.
    """
    from training.models import base_model
    from training.storage import RunNotFoundError

    meta = json.loads(store.get_bytes(run, "train_metrics.json"))
    folder = meta["checkpoints"].get(f"fold{fold}")
    if folder is None:
        raise RunNotFoundError(f"run {run!r} has no checkpoint for fold {fold}")
    try:
        with store.fs.open_input_stream(f"{folder}/{name}.ckpt") as src:
            data = src.read()
    except (FileNotFoundError, OSError) as exc:
        raise RunNotFoundError(f"run {run!r}: no {name} checkpoint ({exc})") from None
    with tempfile.NamedTemporaryFile(suffix=".ckpt") as tmp:
        tmp.write(data)
        tmp.flush()
        return base_model(name).load(tmp.name)
