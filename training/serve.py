"""``bqx serve --model RUN``: the current forecasts of a trained run over HTTP.

A FastAPI app with two routes:

- ``GET /health``: ``{"status": "ok", "run": ...}`` once the run's config is read;
- ``GET /forecasts[?at=TIME]``: every pair's forecast from the run's base models and
  ensembles, computed per request by :func:`training.predict.predict_latest` (the
  code of ``bqx predict``: offline history plus the ``get_online_features`` row),
  with the online row's ``online_event_timestamp``, ``age_minutes`` and ``fresh``.
  The body is :func:`training.predict.forecast_payload`, the same document as
  ``bqx predict --json``.

Checkpoints are loaded once per server and kept in memory. Errors that are the
caller's (an unknown run, no pair with enough history, a bad ``at``) are answered
409/400 with a one-line ``detail``.
"""

from __future__ import annotations

import threading

from training.predict import (
    BadTimeError,
    PredictError,
    forecast_payload,
    predict_latest,
)
from training.storage import RunStore
from training.train import load_run_config


def forecast_app(store: RunStore, run: str, settings, hours: int = 24):
    """The FastAPI app serving ``run``'s forecasts.

    Raises:
        RunNotFoundError: when the run has no config in ``store``.
    """
    from fastapi import FastAPI, HTTPException, Query

    exp = load_run_config(store, run)  # fail at start, not at the first request
    models: dict = {}
    lock = threading.Lock()  # one forecast at a time: torch and the model cache
    app = FastAPI(title="bqx forecasts", description=__doc__.splitlines()[0])

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "run": run, "experiment": exp.name,
                "label": exp.label, "models": list(exp.models)}

    @app.get("/forecasts")
    def forecasts(
        at: str | None = Query(None, description="Forecast as of this UTC time "
                               "(default: now)."),
    ) -> dict:
        try:
            with lock:
                frame = predict_latest(store, run, settings, hours=hours, at=at,
                                       models=models)
        except PredictError as exc:
            code = 400 if isinstance(exc, BadTimeError) else 409
            raise HTTPException(status_code=code, detail=str(exc)) from None
        return forecast_payload(run, frame)

    return app


def serve_forecasts(
    store: RunStore,
    run: str,
    settings,
    host: str = "127.0.0.1",
    port: int = 6570,
    hours: int = 24,
) -> None:
    """Run the forecast server until stopped."""
    import uvicorn

    app = forecast_app(store, run, settings, hours=hours)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
