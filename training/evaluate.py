"""``bqx evaluate RUN``: test-window forecasts of every model and ensemble beside
the baselines, metrics overall and per pair, and a markdown report with plots saved
in the run folder (``report/``)."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from training.config import ENSEMBLES  # noqa: E402
from training.metrics import (  # noqa: E402
    BASELINES,
    baseline_forecasts,
    ic_series,
    metric_table,
    per_pair_table,
)
from training.storage import RunStore  # noqa: E402
from training.train import load_run_config  # noqa: E402


@dataclass
class Evaluation:
    """Metrics and where the report went."""

    overall: pd.DataFrame
    per_pair: pd.DataFrame
    report_path: str
    markdown: str


def test_frame(preds: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """Test rows where every forecast and baseline exists, with baseline columns."""
    test = preds[preds["segment"] == "test"].copy()
    base = baseline_forecasts(test)
    test = pd.concat([test, base], axis=1)
    cols = models + list(base.columns) + ["target"]
    return test.dropna(subset=cols).reset_index(drop=True)


def forecast_columns(preds: pd.DataFrame, exp) -> list[str]:
    """Model and ensemble columns present in a run's forecasts."""
    return [c for c in [*exp.models, *ENSEMBLES] if c in preds.columns]


def evaluate_run(store: RunStore, run: str, interpret: bool = True) -> Evaluation:
    """Evaluate a run's test-window forecasts and save the report with the run.

    Raises:
        RunNotFoundError: when the run or its forecasts are missing.
        ValueError: when the run has no test rows to evaluate.
    """
    exp = load_run_config(store, run)
    preds = store.get_frame(run, "predictions.parquet")
    models = forecast_columns(preds, exp)
    test = test_frame(preds, models)
    if test.empty:
        raise ValueError(f"run {run!r} has no test rows with every forecast")
    cols = models + [b for b in BASELINES if b in test.columns]
    from training.datasets import decoder_steps

    stride = decoder_steps(exp.horizon, exp.every_minutes)
    overall = metric_table(test, cols, stride=stride)
    per_pair = per_pair_table(test, cols)
    images = {
        "pred_vs_real.png": _scatter(test, models),
        "cumulative_ic.png": _cumulative_ic(test, cols),
    }
    tft_info = None
    if interpret and "tft" in exp.models:
        tft_info = _tft_interpretation(store, run, exp)
        if tft_info:
            images["tft_importance.png"] = _importance(tft_info)
            images["tft_attention.png"] = _attention(tft_info)
    md = _markdown(run, exp, test, overall, per_pair, images, tft_info)
    for name, data in images.items():
        store.put_bytes(run, f"report/{name}", data)
    store.put_bytes(run, "report/metrics.csv", overall.to_csv().encode())
    store.put_bytes(run, "report/per_pair.csv", per_pair.to_csv(index=False).encode())
    path = store.put_bytes(run, "report/report.md", md.encode())
    return Evaluation(overall, per_pair, path, md)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _scatter(test: pd.DataFrame, models: list[str]) -> bytes:
    n = max(1, len(models))
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.2), squeeze=False)
    y = test["target"].to_numpy(float)
    for ax, m in zip(axes[0], models, strict=False):
        ax.scatter(test[m], y, s=3, alpha=0.4)
        lim = np.nanmax(np.abs(y)) if len(y) else 1.0
        ax.plot([-lim, lim], [-lim, lim], lw=0.8, color="grey")
        ax.set_title(m)
        ax.set_xlabel("predicted")
        ax.set_ylabel("realised")
    return _png(fig)


def _cumulative_ic(test: pd.DataFrame, cols: list[str]) -> bytes:
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for c in cols:
        ic = ic_series(test, c)
        if len(ic):
            ax.plot(ic.index, ic.cumsum(), label=c, lw=1)
    ax.axhline(0, color="grey", lw=0.6)
    ax.set_title("cumulative information coefficient (Spearman across pairs)")
    ax.legend(fontsize=7)
    fig.autofmt_xdate()
    return _png(fig)


def _importance(info: dict) -> bytes:
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    for ax, key in zip(axes, ("static", "encoder", "decoder"), strict=True):
        items = sorted(info[key].items(), key=lambda kv: kv[1])
        ax.barh([k for k, _ in items], [v for _, v in items])
        ax.set_title(f"TFT {key} variable importance")
        ax.tick_params(labelsize=7)
    return _png(fig)


def _attention(info: dict) -> bytes:
    att = info["attention"]
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot(np.arange(-len(att), 0), att, marker="o", ms=3)
    ax.set_xlabel("encoder step (rows before the forecast)")
    ax.set_title("TFT mean attention")
    return _png(fig)


def _tft_interpretation(store: RunStore, run: str, exp) -> dict | None:
    """TFT variable importance and attention on the last fold's test window."""
    from training.datasets import model_rows
    from training.models import tft
    from training.models.common import DataSpec

    from training.train import load_model

    meta = json.loads(store.get_bytes(run, "train_metrics.json"))
    fold = exp.folds()[-1]
    prepared = store.get_frame(run, "prepared.parquet")
    spec = DataSpec(meta["features"], meta["known"], exp.encoder_length, exp.horizon,
                    exp.every_minutes)
    rows = model_rows(prepared, fold, spec.features + spec.known)
    ds = tft.datasets(rows, fold, spec)
    if "test" not in ds:
        return None
    model = load_model(store, run, fold.index, "tft")
    return tft.interpret(model, ds["test"])


def _fmt(df: pd.DataFrame) -> str:
    return df.to_markdown(floatfmt=".4g") if _has_tabulate() else df.to_string()


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


def _markdown(run, exp, test, overall, per_pair, images, tft_info) -> str:
    span = f"{test['event_timestamp'].min()} .. {test['event_timestamp'].max()}"
    lines = [
        f"# Evaluation of run `{run}`",
        "",
        f"Experiment `{exp.name}`; label `{exp.label}` ({exp.horizon} bars ahead); "
        f"rows every {exp.every}; test rows {len(test)} over "
        f"{test['pair'].nunique()} pairs, {span}.",
        "",
        "Baselines: `zero` (random walk), `persistence` (last realized value of "
        "the label), `known` (the observed part of a BQX target, when it applies). "
        "`rmse_ratio` < 1 beats the best baseline; `da` is directional accuracy "
        "with its 95% bootstrap interval; `ic_mean`/`ic_t`: Spearman IC across "
        "pairs per timestamp, mean and t-statistic; `ic_t_indep`: the t-statistic "
        "over timestamps one label horizon apart (non-overlapping labels).",
        "",
        "## Overall (test windows)",
        "",
        _fmt(overall),
        "",
        "## Per pair",
        "",
        _fmt(per_pair.set_index(["pair", "forecast"])),
        "",
        "## Plots",
        "",
    ]
    lines += [f"![{name}]({name})" for name in images]
    if tft_info:
        top = sorted(tft_info["encoder"].items(), key=lambda kv: -kv[1])[:5]
        lines += ["", "TFT top encoder variables: "
                  + ", ".join(f"{k} {v:.2f}" for k, v in top)]
    return "\n".join(lines) + "\n"
