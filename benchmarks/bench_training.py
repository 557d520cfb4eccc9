"""TFT training throughput, Ray Train vs a plain Lightning loop (same data, process).

Ray Train is one TorchTrainer worker; the plain loop runs in this process on the
same rows. ``--real-jan`` instead trains and evaluates the ensemble on the real
January 2024 bars.

Usage:
    python benchmarks/bench_training.py [--pairs 7] [--days 3] [--epochs 2] [--reps 3]
    python benchmarks/bench_training.py --gpu [--no-ray] [--frame frame.parquet]
    python benchmarks/bench_training.py --save-frame frame.parquet   # then exit
    python benchmarks/bench_training.py --real-jan [--folds 1]

The two paths alternate (plain, Ray, plain, Ray, ...) ``--reps`` times; each fit
runs the same Lightning code on the same rows: Ray adds its DDP strategy,
environment, report callback (a checkpoint per epoch) and a worker process. A
callback counts the samples and times each epoch (``cuda.synchronize`` first on a
GPU); printed: samples/s over all epochs and over the epochs after the first
("steady", without start-up costs such as CUDA's), medians of each path, Ray's
overhead in percent of the plain median, and the end-to-end wall time of
``TorchTrainer.fit`` (worker start included).

``--frame`` reads a saved training frame (Parquet: ``pair``, ``event_timestamp``,
the features and the label; ``--save-frame`` writes the simulated one), so the
benchmark runs where Feast and dbt are absent. ``--no-ray`` runs the plain path
alone and imports nothing from Ray; the plain path imports torch, lightning,
pytorch-forecasting (scikit-learn, scipy, scikit-base), pandas, numpy, PyYAML, and
pyarrow for ``--frame``; the simulated frame needs ``ingestion.simulator``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PAIRS = ["EUR_USD", "GBP_USD", "USD_JPY", "AUD_USD", "USD_CAD", "USD_CHF", "NZD_USD"]
HEAVY = ("ray", "feast", "duckdb", "dbt")


def sim_frame(n_pairs: int, days: int) -> pd.DataFrame:
    """The simulated training frame of ``n_pairs`` x ``days`` (planted signal)."""
    from tests.training.frames import sim_frame as frame

    start = pd.Timestamp("2024-01-08")
    end = start + pd.Timedelta(days=days)
    return frame(PAIRS[:n_pairs], str(start.date()), str(end.date()), planted=True)


def bench_rows(frame: pd.DataFrame, label: str, features: list[str]):
    """Model rows of one fold over the frame: 80% train, then valid and test."""
    from training.config import config_from_dict
    from training.data import feature_columns, known_columns, prepare_frame
    from training.datasets import model_rows
    from training.models.common import DataSpec

    ts = pd.to_datetime(frame["event_timestamp"], utc=True)
    start, end = ts.min().tz_localize(None), ts.max().tz_localize(None)
    cut = start + (end - start) * 0.8
    gap = pd.Timedelta(minutes=max(60, 2 * int(label.rsplit("_", 1)[-1])))
    mid = cut + gap + (end - cut - gap) / 2
    exp = config_from_dict({
        "name": "bench", "label": label, "features": features,
        "segments": {"train": [str(start), str(cut)],
                     "valid": [str(cut + gap), str(mid)],
                     "test": [str(mid + gap), str(end)]},
    })
    prep = prepare_frame(frame, exp)
    fold = exp.folds()[0]
    feats, known = feature_columns(prep, exp), known_columns(prep, exp)
    rows = model_rows(prep, fold, feats + known)
    spec = DataSpec(feats, known, exp.encoder_length, exp.horizon, exp.every_minutes)
    return fold, rows, spec


def _batch_size(batch) -> int:
    import torch

    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0])
    items = batch.values() if isinstance(batch, dict) else batch
    for item in items:
        n = _batch_size(item)
        if n:
            return n
    return 0


def _epoch_clock(gpu: bool):
    """A Lightning callback timing each epoch and counting its samples."""
    import lightning.pytorch as pl
    import torch

    class EpochClock(pl.Callback):
        def __init__(self):
            self.epochs: list[tuple[int, float]] = []
            self.device = "?"

        def _now(self) -> float:
            if gpu:
                torch.cuda.synchronize()
            return time.perf_counter()

        def on_train_epoch_start(self, trainer, module):
            self.t0, self.n = self._now(), 0

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            self.n += _batch_size(batch)
            self.device = str(module.device)  # Lightning moves it back after fit

        def on_train_epoch_end(self, trainer, module):
            self.epochs.append((self.n, self._now() - self.t0))

    return EpochClock()


def _fit(config: dict) -> dict:
    """Fit TFT once (Ray worker or plain); samples/s of ``Trainer.fit``."""
    import lightning.pytorch as pl
    import torch

    from training.models import tft
    from training.train import fold_from_dict, lightning_trainer

    torch.set_num_threads(config["threads"])
    pl.seed_everything(7)
    ds = tft.datasets(config["rows"], fold_from_dict(config["fold"]), config["spec"])
    model = tft.build(ds["train"], {})
    loader = tft.loader(ds["train"], config["batch_size"], True)
    clock = _epoch_clock(config["gpu"])
    trainer = lightning_trainer(
        config["epochs"], ray=config["ray"], callbacks=[clock],
        accelerator="gpu" if config["gpu"] else "cpu",
        limit_train_batches=config["limit_batches"],
    )
    t0 = time.perf_counter()
    trainer.fit(model, loader)
    seconds = time.perf_counter() - t0
    samples = sum(n for n, _ in clock.epochs)
    steady = clock.epochs[1:] or clock.epochs
    out = {
        "samples": samples, "fit_s": seconds, "samples_per_s": samples / seconds,
        "steady_per_s": sum(n for n, _ in steady) / sum(s for _, s in steady),
        "device": clock.device,
    }
    if config["ray"]:
        import json
        import tempfile

        import ray.train

        # Result.metrics are those of the last checkpoint: report one with them.
        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, "throughput.json").write_text(json.dumps(out))
            ray.train.report(out, checkpoint=ray.train.Checkpoint.from_directory(tmp))
    return out


def _ray_fit(config: dict, args) -> tuple[dict, float]:
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    root = str(Path(__file__).resolve().parents[1])
    t0 = time.perf_counter()
    result = TorchTrainer(
        _fit,
        train_loop_config={**config, "ray": True},
        scaling_config=ScalingConfig(
            num_workers=1, use_gpu=args.gpu,
            resources_per_worker={"CPU": 1, **({"GPU": 1} if args.gpu else {})}),
        run_config=RunConfig(name="bench", storage_path=args.storage,
                             worker_runtime_env={"env_vars": {"PYTHONPATH": root}}),
    ).fit()
    return dict(result.metrics), time.perf_counter() - t0


def _line(name: str, r: dict) -> str:
    return (f"{name:<5}: {r['samples_per_s']:9.1f} samples/s, steady "
            f"{r['steady_per_s']:9.1f} ({r['samples']} samples in {r['fit_s']:.1f} s"
            f", {r['device']})")


def _device(args) -> str:
    import torch

    if args.gpu:
        if not torch.cuda.is_available():
            raise SystemExit("--gpu: torch sees no CUDA device")
        return f"GPU {torch.cuda.get_device_name(0)} (torch {torch.__version__})"
    return f"CPU, {args.threads} torch thread(s) (torch {torch.__version__})"


def throughput(args) -> None:
    from training.train import fold_to_dict

    if args.frame:
        frame = pd.read_parquet(args.frame)
        what = f"frame {args.frame}"
    else:
        frame = sim_frame(args.pairs, args.days)
        what = f"simulated {args.pairs} pairs x {args.days} days"
    features = [c for c in args.features.split(",") if c in frame.columns]
    fold, rows, spec = bench_rows(frame, args.label, features)
    config = {"rows": rows, "fold": fold_to_dict(fold), "spec": spec,
              "epochs": args.epochs, "batch_size": args.batch_size,
              "threads": args.threads, "gpu": args.gpu, "ray": False,
              "limit_batches": args.limit_batches}
    print(f"device: {_device(args)}")
    print(f"TFT on {what}: {len(rows)} 5-min rows, features {spec.features}, "
          f"{args.epochs} epochs, batch {args.batch_size}, {args.reps} reps",
          flush=True)
    if not args.no_ray:
        import ray

        ray.init(num_cpus=max(2, args.threads + 1), num_gpus=1 if args.gpu else None,
                 include_dashboard=False, log_to_driver=False)
    plain, rayed, walls = [], [], []
    for rep in range(1, args.reps + 1):
        plain.append(_fit(config))
        print(f"rep {rep} " + _line("plain", plain[-1]), flush=True)
        if args.no_ray:
            continue
        metrics, wall = _ray_fit(config, args)
        rayed.append(metrics)
        walls.append(wall)
        print(f"rep {rep} " + _line("ray", metrics)
              + f"; TorchTrainer.fit {wall:.1f} s end to end", flush=True)
    _summary(plain, rayed, walls)
    loaded = sorted(m for m in HEAVY if m in sys.modules)
    print(f"imported of {', '.join(HEAVY)}: {', '.join(loaded) or 'none'}")
    if args.no_ray and loaded:
        raise SystemExit(f"--no-ray imported {loaded}")
    if args.list_imports:
        top = {m.split(".")[0] for m in sys.modules} - set(sys.stdlib_module_names)
        print("top-level modules imported:", " ".join(sorted(
            m for m in top if not m.startswith("_"))))


def _summary(plain: list[dict], rayed: list[dict], walls: list[float]) -> None:
    def med(runs, key):
        return statistics.median(r[key] for r in runs)

    p, ps = med(plain, "samples_per_s"), med(plain, "steady_per_s")
    print(f"median plain Lightning: {p:9.1f} samples/s (steady {ps:.1f})")
    if not rayed:
        return
    r, rs = med(rayed, "samples_per_s"), med(rayed, "steady_per_s")
    print(f"median Ray Train      : {r:9.1f} samples/s (steady {rs:.1f})")
    print(f"Ray overhead in Trainer.fit: {100 * (p / r - 1):+.1f}% "
          f"(steady epochs {100 * (ps / rs - 1):+.1f}%); TorchTrainer.fit end to "
          f"end: median {statistics.median(walls):.1f} s, "
          f"{med(rayed, 'samples') / statistics.median(walls):.1f} samples/s")


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
    p.add_argument("--pairs", type=int, default=7, help="Simulated pairs.")
    p.add_argument("--days", type=int, default=3, help="Simulated days.")
    p.add_argument("--frame", help="Parquet training frame instead of simulated bars.")
    p.add_argument("--save-frame", help="Write the simulated frame here and exit.")
    p.add_argument("--label", default="fwd_ret_15")
    p.add_argument("--features", default="bqx_45,ret_std_45,signal",
                   help="Comma-separated feature columns (those in the frame).")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--reps", type=int, default=3, help="Alternating repetitions.")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--limit-batches", type=int, default=None,
                   help="Batches per epoch (default: all).")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--gpu", action="store_true", help="Both paths on one GPU.")
    p.add_argument("--no-ray", action="store_true",
                   help="The plain path alone (nothing from Ray is imported).")
    p.add_argument("--list-imports", action="store_true",
                   help="Print the top-level modules the run imported.")
    p.add_argument("--storage", default="/tmp/bqx-bench-runs")
    p.add_argument("--real-jan", action="store_true")
    p.add_argument("--config", default="training/configs/ensemble_fwd60_jan2024.yaml")
    p.add_argument("--data-dir", default="/tmp/bqx-bench")
    p.add_argument("--run", default="jan2024")
    p.add_argument("--bars", default="../shared/data/fx_m1",
                   help="Folder of the real January 2024 M1 CSVs.")
    args = p.parse_args()
    if args.save_frame:
        sim_frame(args.pairs, args.days).to_parquet(args.save_frame, index=False)
        print(f"saved {args.save_frame}")
        return
    real_jan(args) if args.real_jan else throughput(args)


if __name__ == "__main__":
    main()
