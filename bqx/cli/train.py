"""``bqx train``, ``bqx evaluate`` and ``bqx predict``: thin commands over
:mod:`training`. The lead registers them with :func:`register`."""

from __future__ import annotations

from pathlib import Path

import typer

from bqx.cli.common import BqxError, console, load_settings


def _store(storage: str | None):
    from training.storage import run_store

    return run_store(load_settings(), storage)


def train_cmd(
    config: Path = typer.Option(..., "--config", "-c", help="Experiment YAML."),
    workers: int = typer.Option(1, help="Ray Train workers (ScalingConfig)."),
    gpu: bool = typer.Option(False, "--gpu/--cpu", help="One GPU per worker."),
    run: str = typer.Option(None, help="Run name (default: <experiment>-<time>)."),
    storage: str = typer.Option(
        None, help="Runs folder or s3:// URI (default: from settings)."
    ),
    frame: Path = typer.Option(
        None, help="Parquet training frame instead of the feature store."
    ),
) -> None:
    """Train the experiment's models on Ray Train and fit its ensembles."""
    import pandas as pd

    from training.config import ConfigError, load_config
    from training.data import DataError, load_frame
    from training.train import TrainError, run_experiment

    settings = load_settings()
    try:
        exp = load_config(config)
        if frame is not None:
            data = pd.read_parquet(frame)
        else:
            console.print(f"loading training frame ({exp.service}) from the store")
            data = load_frame(exp, settings)
        _ray_init(workers, gpu)
        with console.status("training") as status:
            result = run_experiment(
                exp,
                data,
                _store(storage),
                run=run,
                workers=workers,
                gpu=gpu,
                progress=lambda msg: status.update(f"training {msg}"),
            )
    except (ConfigError, DataError, TrainError, FileNotFoundError) as exc:
        raise BqxError(str(exc)) from None
    console.print(f"run [bold]{result.run}[/] saved to {result.uri} "
                  f"in {result.seconds:.0f} s")


def _ray_init(workers: int, gpu: bool) -> None:
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=max(2, workers + 1), num_gpus=1 if gpu else None,
                 include_dashboard=False, log_to_driver=False)


def evaluate_cmd(
    run: str = typer.Argument(..., help="Run name."),
    storage: str = typer.Option(None, help="Runs folder or s3:// URI."),
) -> None:
    """Test-window metrics of every model and ensemble vs the baselines."""
    from training.evaluate import evaluate_run
    from training.storage import RunNotFoundError

    try:
        ev = evaluate_run(_store(storage), run)
    except (RunNotFoundError, ValueError) as exc:
        raise BqxError(str(exc)) from None
    console.print(ev.overall.round(4).to_string())
    console.print(f"report: {ev.report_path}")


def predict_cmd(
    run: str = typer.Argument(..., help="Run name."),
    storage: str = typer.Option(None, help="Runs folder or s3:// URI."),
    hours: int = typer.Option(24, help="Hours of feature history to read."),
    at: str = typer.Option(
        None, help="Forecast as of this UTC time (default: now), e.g. 2024-01-11T12:00."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print the JSON document that `bqx serve --model` serves."
    ),
) -> None:
    """Current forecasts of every pair from the latest features.

    The history comes from the offline store, the newest row from the online
    store (get_online_features); each pair's online row time, age and fresh flag
    are printed beside the forecasts.
    """
    import json

    from training.predict import PredictError, forecast_payload, predict_latest
    from training.storage import RunNotFoundError

    try:
        out = predict_latest(_store(storage), run, load_settings(), hours=hours, at=at)
    except (RunNotFoundError, PredictError) as exc:
        raise BqxError(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(forecast_payload(run, out)))
        return
    console.print(out.to_string(index=False))


def serve_model(
    run: str, storage: str | None, host: str, port: int, hours: int = 24
) -> None:
    """``bqx serve --model RUN``: the run's forecasts over HTTP (GET /forecasts,
    GET /health) until stopped."""
    from training.serve import serve_forecasts
    from training.storage import RunNotFoundError

    try:
        store = _store(storage)
        console.print(f"serving forecasts of run [bold]{run}[/] on "
                      f"http://{host}:{port}/forecasts")
        serve_forecasts(store, run, load_settings(), host=host, port=port,
                        hours=hours)
    except RunNotFoundError as exc:
        raise BqxError(str(exc)) from None


def register(app: typer.Typer) -> None:
    """Add ``train``, ``evaluate`` and ``predict`` to the ``bqx`` app."""
    from bqx.runs import recorded

    app.command("train")(recorded("train")(train_cmd))
    app.command("evaluate")(recorded("evaluate")(evaluate_cmd))
    app.command("predict")(recorded("predict")(predict_cmd))
