"""TFT training throughput: Ray Train (TorchTrainer, 1 worker) vs a plain Lightning
loop on the same data in the same process, and optionally the evaluation of the
ensemble on the real January 2024 bars.

Usage:
    python benchmarks/bench_training.py [--pairs 7] [--days 5] [--epochs 2] [--gpu]
    python benchmarks/bench_training.py --real-jan [--folds 1]

Prints samples/s of ``Trainer.fit`` in both paths (the same Lightning code; Ray adds
its DDP strategy, environment, report callback with a checkpoint per epoch and a
worker process), plain runs before and after the Ray run (to bracket load from other
processes), Ray's overhead in percent, and the end-to-end wall time of
``TorchTrainer.fit``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PAIRS = ["EUR_USD", "GBP_USD", "USD_JPY", "AUD_USD", "USD_CAD", "USD_CHF", "NZD_USD"]


def _sim_rows(n_pairs: int, days: int):
    from tests.training.frames import sim_frame
    from training.config import config_from_dict
    from training.data import feature_columns, known_columns, prepare_frame
    from training.datasets import model_rows
    from training.models.common import DataSpec

    start = pd.Timestamp("2024-01-08")
    end = start + pd.Timedelta(days=days)
    frame = sim_frame(PAIRS[:n_pairs], str(start.date()), str(end.date()), planted=True)
    cut = start + pd.Timedelta(days=days - 1)
    exp = config_from_dict({
        "name": "bench", "label": "fwd_ret_15",
        "features": ["bqx_45", "ret_std_45", "signal"],
        "segments": {"train": [str(start), str(cut)],
                     "valid": [str(cut + pd.Timedelta("1h")),
                               str(end - pd.Timedelta("2h"))],
                     "test": [str(end - pd.Timedelta("1h")), str(end)]},
    })
    prep = prepare_frame(frame, exp)
    fold = exp.folds()[0]
    feats, known = feature_columns(prep, exp), known_columns(prep, exp)
    rows = model_rows(prep, fold, feats + known)
    spec = DataSpec(feats, known, exp.encoder_length, exp.horizon, exp.every_minutes)
    return exp, fold, rows, spec


def _fit(config: dict) -> dict:
    """Fit TFT once (Ray worker or plain), return samples/s of ``Trainer.fit``."""
    import lightning.pytorch as pl
    import torch

    from training.models import tft
    from training.train import fold_from_dict, lightning_trainer

    torch.set_num_threads(config["threads"])
    pl.seed_everything(7)
    ds = tft.datasets(config["rows"], fold_from_dict(config["fold"]), config["spec"])
    model = tft.build(ds["train"], {})
    loader = tft.loader(ds["train"], config["batch_size"], True)
    trainer = lightning_trainer(config["epochs"], ray=config["ray"],
                                accelerator="gpu" if config["gpu"] else "cpu")
    t0 = time.perf_counter()
    trainer.fit(model, loader)
    seconds = time.perf_counter() - t0
    samples = len(ds["train"]) * config["epochs"]
    out = {"samples": samples, "fit_s": seconds, "samples_per_s": samples / seconds}
    if config["ray"]:
        import json
        import tempfile

        import ray.train

        # Result.metrics are those of the last checkpoint: report one with them.
        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, "throughput.json").write_text(json.dumps(out))
            ray.train.report(out, checkpoint=ray.train.Checkpoint.from_directory(tmp))
    return out


def throughput(args) -> None:
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from training.train import fold_to_dict

    exp, fold, rows, spec = _sim_rows(args.pairs, args.days)
    config = {"rows": rows, "fold": fold_to_dict(fold), "spec": spec,
              "epochs": args.epochs, "batch_size": args.batch_size,
              "threads": args.threads, "ray": False, "gpu": args.gpu}
    device = "GPU" if args.gpu else "CPU"
    print(f"TFT, {args.pairs} pairs x {args.days} days of 5-min rows, "
          f"{len(rows)} rows, {args.epochs} epochs, batch {args.batch_size}, {device}")
    plain = _fit(config)
    print(f"plain Lightning : {plain['samples_per_s']:8.1f} samples/s "
          f"({plain['samples']} samples in {plain['fit_s']:.1f} s)")
    ray.init(num_cpus=2, num_gpus=1 if args.gpu else None, include_dashboard=False,
             log_to_driver=False)
    root = str(Path(__file__).resolve().parents[1])
    t0 = time.perf_counter()
    result = TorchTrainer(
        _fit,
        train_loop_config={**config, "ray": True},
        scaling_config=ScalingConfig(num_workers=1, use_gpu=args.gpu,
                                     resources_per_worker={"CPU": 1}),
        run_config=RunConfig(name="bench", storage_path=args.storage,
                             worker_runtime_env={"env_vars": {"PYTHONPATH": root}}),
    ).fit()
    wall = time.perf_counter() - t0
    r = result.metrics
    print(f"Ray Train       : {r['samples_per_s']:8.1f} samples/s "
          f"({r['samples']} samples in {r['fit_s']:.1f} s)")
    ray.shutdown()
    again = _fit(config)
    print(f"plain Lightning : {again['samples_per_s']:8.1f} samples/s "
          "(again, after Ray)")
    base = (plain["samples_per_s"] + again["samples_per_s"]) / 2
    overhead = 100 * (base / r["samples_per_s"] - 1)
    print(f"Ray overhead in Trainer.fit vs the mean plain run: {overhead:+.1f}% "
          f"(TorchTrainer.fit end to end {wall:.1f} s incl. worker start; "
          f"end-to-end samples/s {r['samples'] / wall:.1f})")


def january_frame(folder: Path, h: int) -> pd.DataFrame:
    """A training frame from the real M1 CSVs, features and labels computed with
    pandas by the formulas of features.md (for when the feature store is not
    loaded with these bars): ``bqx_w``, ``ret_std_w``, ``fwd_ret_h``,
    ``fwd_span_minutes_h``, calendar ``gap_minutes``."""
    import numpy as np

    parts = []
    for path in sorted(folder.glob("*_202401.csv.gz")):
        name = path.name.split("_")[0]
        bars = pd.read_csv(path, parse_dates=["time"])
        c = bars["close"].astype(float)
        r = np.log(c / c.shift(1))
        start = bars["time"]
        out = pd.DataFrame({"pair": f"{name[:3]}_{name[3:]}",
                            "event_timestamp": start + pd.Timedelta(minutes=1)})
        for w in (45, 90, 180, 360, 720):
            out[f"bqx_{w}"] = 100 * (c - c.shift(w)) / c.shift(w)
        for w in (45, 90, 180):
            out[f"ret_std_{w}"] = r.rolling(w).std() * 1e4
        out["gap_minutes"] = (start.diff().dt.total_seconds() / 60 - 1).fillna(0)
        out[f"fwd_ret_{h}"] = 100 * (c.shift(-h) - c) / c
        out[f"fwd_span_minutes_{h}"] = (start.shift(-h) - start).dt.total_seconds() / 60
        parts.append(out)
    if not parts:
        raise SystemExit(f"no *_202401.csv.gz bars in {folder}")
    return pd.concat(parts, ignore_index=True)


def real_jan(args) -> None:
    """Train all models + ensembles on the real January 2024 bars and evaluate."""
    import ray

    from bqx.settings import Settings
    from training.config import load_config
    from training.evaluate import evaluate_run
    from training.storage import run_store
    from training.train import run_experiment

    exp = load_config(args.config)
    frame = january_frame(Path(args.bars), exp.horizon)
    store = run_store(Settings(_env_file=None, data_dir=args.data_dir))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    t0 = time.perf_counter()
    res = run_experiment(exp, frame, store, run=args.run,
                         progress=lambda m: print("training", m, flush=True))
    print(f"trained in {time.perf_counter() - t0:.0f} s -> {res.uri}")
    ev = evaluate_run(store, res.run)
    print(ev.overall.round(4).to_string())
    print(f"report: {ev.report_path}")
    ray.shutdown()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=7)
    p.add_argument("--days", type=int, default=5)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--gpu", action="store_true")
    p.add_argument("--storage", default="/tmp/bqx-bench-runs")
    p.add_argument("--real-jan", action="store_true")
    p.add_argument("--config", default="training/configs/ensemble_fwd60_jan2024.yaml")
    p.add_argument("--data-dir", default="/tmp/bqx-bench")
    p.add_argument("--run", default="jan2024")
    p.add_argument("--bars", default="../shared/data/fx_m1",
                   help="Folder of the real January 2024 M1 CSVs.")
    args = p.parse_args()
    real_jan(args) if args.real_jan else throughput(args)


if __name__ == "__main__":
    main()
