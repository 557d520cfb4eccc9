"""``bqx predict RUN``: current forecasts of every pair from a trained run.

The sequence models need each pair's recent history (``encoder_length`` rows), so
the forecast is made at each pair's latest row of a recent frame: by default the
last ``hours`` of the feature store up to now (``bqx.training_frame``), or any frame
passed in. Models come from the last fold's checkpoints; the ensembles from the
run's ``ensembles.json`` / ``moe.pt``.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import torch
from pytorch_forecasting import TimeSeriesDataSet

from training.data import prepare_frame
from training.datasets import decoder_steps
from training.models.meta import RidgeMeta
from training.models.moe import MixtureOfExperts
from training.storage import RunStore
from training.train import load_model, load_run_config


class PredictError(ValueError):
    """Forecasts that cannot be made from the given data."""


class BadTimeError(PredictError):
    """An ``at`` time that cannot be read."""


def live_rows(prepared: pd.DataFrame, reals: list[str]) -> pd.DataFrame:
    """Rows with every real and a realized label, numbered per pair (the unknown
    targets of the latest rows are set to 0; they are never inputs)."""
    rows = prepared.dropna(subset=reals).copy()
    rows["target"] = rows["target"].fillna(0.0)
    rows["realized"] = rows.groupby("pair")["realized"].ffill()
    rows = rows.dropna(subset=["realized"])
    rows["segment"] = None
    rows["time_idx"] = rows.groupby("pair").cumcount().astype("int64")
    return rows.reset_index(drop=True)


def _tft(model, rows: pd.DataFrame) -> pd.DataFrame:
    from training.models import tft

    ds = TimeSeriesDataSet.from_parameters(
        model.dataset_parameters, rows, predict=True, stop_randomization=True
    )
    return tft.predict(model, ds, rows)


def _nbeats(model, rows: pd.DataFrame, steps: int) -> pd.DataFrame:
    from training.models import nbeats

    last = rows.groupby("pair").tail(1)
    future = pd.concat(
        [last.assign(time_idx=last["time_idx"] + k) for k in range(1, steps + 1)]
    )
    data = pd.concat([rows, future], ignore_index=True).assign(
        series=lambda d: d["realized"].astype("float64")
    )
    ds = TimeSeriesDataSet.from_parameters(
        model.dataset_parameters, data, predict=True, stop_randomization=True
    )
    return nbeats.predict(model, ds, rows)


def _cross_pair(model, rows: pd.DataFrame) -> pd.DataFrame:
    from training.models import cross_pair

    latest = rows.groupby("pair").tail(1)
    latest = latest[latest["pair"].isin(model.hparams.pairs)]
    panel = cross_pair.live_panel(model, latest)
    out = cross_pair.predict(model, panel, latest)
    return out.drop(columns="event_timestamp").merge(
        latest[["pair", "event_timestamp"]], on="pair"
    )


def predict_frame(
    store: RunStore, run: str, frame: pd.DataFrame, models: dict | None = None
) -> pd.DataFrame:
    """Forecasts at each pair's latest row of ``frame``.

    Args:
        store: the runs storage.
        run: the run name.
        frame: a frame like the training frame (its label may be absent).
        models: optional cache of loaded base models (filled on first use), so a
            server loads each checkpoint once.

    Returns:
        One row per pair: ``pair``, ``event_timestamp`` and one column per model
        and ensemble of the run.

    Raises:
        PredictError: when no pair has enough history for the models.
    """
    exp = load_run_config(store, run)
    meta = json.loads(store.get_bytes(run, "train_metrics.json"))
    fold = exp.folds()[-1].index
    if exp.label not in frame.columns:
        frame = frame.assign(**{exp.label: np.nan})
    anchor = pd.to_datetime(frame["event_timestamp"], utc=True).max()
    prepared = prepare_frame(frame, exp, anchor=anchor)
    rows = live_rows(prepared, meta["features"] + meta["known"])
    counts = rows.groupby("pair").size()
    rows = rows[rows["pair"].isin(counts[counts > exp.encoder_length].index)]
    if rows.empty:
        span = pd.to_datetime(frame["event_timestamp"], utc=True)
        raise PredictError(
            f"no pair has more than {exp.encoder_length} rows with every feature "
            f"between {span.min()} and {span.max()} to forecast from"
        )
    latest = rows.groupby("pair").tail(1)[["pair", "event_timestamp"]]
    out = latest.reset_index(drop=True)
    cache = {} if models is None else models
    for name in exp.models:
        key = (run, fold, name)
        if key not in cache:
            cache[key] = load_model(store, run, fold, name)
        model = cache[key]
        if name == "tft":
            pred = _tft(model, rows)
        elif name == "nbeats":
            pred = _nbeats(model, rows, decoder_steps(exp.horizon, exp.every_minutes))
        else:
            pred = _cross_pair(model, rows)
        out = out.merge(pred.rename(columns={"prediction": name}),
                        on=["pair", "event_timestamp"], how="left")
    return _ensembles(store, run, exp, fold, out, rows)


def _ensembles(store, run, exp, fold, out, rows) -> pd.DataFrame:
    info = json.loads(store.get_bytes(run, "ensembles.json"))
    if f"meta_f{fold}" in info:
        m = info[f"meta_f{fold}"]
        meta = RidgeMeta(
            m["columns"], m["alpha"], np.asarray(m["coef"]), m["intercept"]
        )
        out["meta"] = meta.predict(out)
    if store.exists(run, "moe.pt"):
        states = torch.load(io.BytesIO(store.get_bytes(run, "moe.pt")),
                            weights_only=False)
        if f"moe_f{fold}" in states:
            moe = MixtureOfExperts.from_state(states[f"moe_f{fold}"])
            feats = rows.groupby("pair").tail(1)[["pair", *moe.features]]
            with_feats = out.merge(feats, on="pair", how="left")
            out["moe"] = moe.predict(with_feats)
    return out


def with_online(
    history: pd.DataFrame, online: pd.DataFrame, until: pd.Timestamp | None = None
) -> pd.DataFrame:
    """History plus each pair's online row when it is fresh, newer, and not after
    ``until`` (when given)."""
    if online.empty:
        return history
    online = online.copy()
    online["event_timestamp"] = pd.to_datetime(online["event_timestamp"], utc=True)
    if "fresh" in online.columns:
        online = online[online["fresh"].astype(bool)]
    if until is not None:
        online = online[online["event_timestamp"] <= until]
    last = history.groupby("pair")["event_timestamp"].max()
    newer = online[online["event_timestamp"] > online["pair"].map(last).fillna(
        pd.Timestamp.min.tz_localize("UTC"))]
    cols = [c for c in newer.columns if c in history.columns]
    return pd.concat([history, newer[cols]], ignore_index=True)


ONLINE_STATUS = ("online_event_timestamp", "age_minutes", "fresh")


def with_online_status(forecasts: pd.DataFrame, online: pd.DataFrame) -> pd.DataFrame:
    """One row per pair of ``online`` (then any other forecast pair): the online
    row's ``online_event_timestamp``, ``age_minutes`` and ``fresh`` beside the
    forecasts (null forecasts for a pair without enough history)."""
    status = online[["pair", "event_timestamp", "age_minutes", "fresh"]].rename(
        columns={"event_timestamp": "online_event_timestamp"}
    )
    status["online_event_timestamp"] = pd.to_datetime(
        status["online_event_timestamp"], utc=True
    )
    out = status.merge(forecasts, on="pair", how="outer", sort=False)
    order = list(status["pair"]) + [p for p in forecasts["pair"]
                                    if p not in set(status["pair"])]
    out = out.set_index("pair").loc[order].reset_index()
    first = ["pair", "event_timestamp", *ONLINE_STATUS]
    return out[first + [c for c in out.columns if c not in first]]


def predict_latest(
    store: RunStore,
    run: str,
    settings,
    hours: int = 24,
    at=None,
    models: dict | None = None,
) -> pd.DataFrame:
    """Forecasts now (or as of ``at``): the last ``hours`` of the offline store
    (the models' encoder history) plus each pair's online row (``online_v1``, read
    with ``get_online_features``) when it is fresh and newer.

    Returns:
        One row per pair: ``pair``, ``event_timestamp`` (the row the forecast is
        made at), the online row's ``online_event_timestamp``, ``age_minutes`` and
        ``fresh``, then one column per model and ensemble of the run.

    Raises:
        PredictError: when no pair has enough history in the period.
    """
    from bqx.features import online_values
    from training.data import load_frame

    exp = load_run_config(store, run)
    end = (pd.Timestamp.now(tz="UTC") if at is None else _utc(at)).floor("min")
    exp.start = (end - pd.Timedelta(hours=hours)).isoformat()
    exp.end = end.isoformat()
    history = load_frame(exp, settings)
    online = online_values(settings, exp.pairs or settings.pair_list)
    forecasts = predict_frame(
        store, run, with_online(history, online, until=end), models=models
    )
    return with_online_status(forecasts, online)


def _utc(value) -> pd.Timestamp:
    try:
        ts = pd.Timestamp(value)
    except ValueError:
        raise BadTimeError(f"at={value!r} is not a time") from None
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def forecast_payload(run: str, forecasts: pd.DataFrame) -> dict:
    """The JSON document of ``bqx predict --json`` and of the forecast server's
    ``GET /forecasts``: the run and one record per pair (times in ISO 8601 UTC,
    missing values as null, floats exact)."""
    records = []
    for row in forecasts.to_dict("records"):
        records.append({k: _json_value(v) for k, v in row.items()})
    return {"run": run, "forecasts": records}


def _json_value(value):
    if value is None:
        return None
    if isinstance(value, pd.Timestamp):
        return None if pd.isna(value) else value.isoformat()
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if np.isnan(value) else float(value)
    if value is pd.NaT or (not isinstance(value, str) and pd.isna(value)):
        return None
    return value
