"""``bqx train``/``evaluate``/``predict`` on the production deployment (PostgreSQL
warehouse and offline store, Redis online store, SQL registry), and the forecast
server ``bqx serve --model RUN`` answering what ``bqx predict`` prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from bqx import features
from bqx.settings import get_settings
from bqx.warehouse import open_warehouse
from ingestion.simulator import simulate_bars
from tests.conftest import free_port, make_settings
from training.storage import run_store

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

PAIRS = ["EUR_USD", "USD_JPY", "EUR_JPY"]
AT = "2024-01-11T12:00"
PREDICT = ["--at", AT, "--hours", "3", "--json"]  # 3 h hold the encoder's 12 rows
EXPERIMENT = {
    "name": "prod",
    "label": "fwd_ret_15",
    "features": ["bqx_45", "ret_std_45", "bqx_90"],
    "start": "2024-01-10T02:00",
    "end": "2024-01-11T12:00",
    "segments": {
        "train": ["2024-01-10T02:00", "2024-01-10T20:00"],
        "valid": ["2024-01-10T21:00", "2024-01-11T02:00"],
        "test": ["2024-01-11T03:00", "2024-01-11T12:00"],
    },
    "models": {"tft": {"hidden_size": 8, "hidden_continuous_size": 4},
               "cross_pair": {"d_model": 8, "heads": 2}},
    "ensemble": ["meta"],
    "trainer": {"max_epochs": 1, "batch_size": 128, "seed": 7},
}


@contextmanager
def _env(settings):
    """The CLI reads its settings from BQX_* variables."""
    saved = dict(os.environ)
    os.environ.update(settings.as_env())
    get_settings.cache_clear()
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        get_settings.cache_clear()


def _bqx(*args: str):
    from bqx.cli.main import app

    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == 0, f"bqx {' '.join(args)}: {res.output}{res.exception!r}"
    return res


@pytest.fixture(scope="module")
def prod(tmp_path_factory, pg_database_factory, redis_db, ray_session):
    """A tiny production deployment: simulated bars, dbt marts on PostgreSQL, Feast
    apply + materialize into Redis; then a run trained on it through ``bqx train``."""
    import redis

    redis.Redis(port=6379, db=redis_db).flushdb()
    tmp = tmp_path_factory.mktemp("prod_train")
    settings = make_settings(
        tmp / "bqx",
        deployment="production",
        warehouse="postgres",
        pg_database=pg_database_factory(),
        redis_db=redis_db,
        pairs=",".join(PAIRS),
    )
    bars = simulate_bars(PAIRS, "2024-01-10", "2024-01-11 12:00", seed=8)
    with open_warehouse(settings) as wh:
        wh.ensure_schema()
        wh.upsert_candles(bars, source="simulator:M")
    features.build(settings)
    features.publish(settings)
    cfg = tmp / "prod.yaml"
    cfg.write_text(yaml.safe_dump(EXPERIMENT))
    with _env(settings):
        train = _bqx("train", "--config", str(cfg), "--run", "p1", "--workers", "1")
    return settings, train.output


def test_train_evaluate_predict_on_production(prod):
    settings, train_output = prod
    assert "run p1 saved" in train_output
    store = run_store(settings)
    preds = store.get_frame("p1", "predictions.parquet")
    test = preds[preds["segment"] == "test"]
    assert set(test["pair"]) == set(PAIRS)
    for col in ("tft", "cross_pair", "meta"):
        assert test[col].notna().mean() > 0.95, col
    with _env(settings):
        _bqx("evaluate", "p1")
        out = _bqx("predict", "p1", *PREDICT).stdout
    report = settings.data_dir / "runs" / "p1" / "report"
    assert "persistence" in (report / "report.md").read_text()
    metrics = pd.read_csv(report / "metrics.csv", index_col=0)
    assert {"tft", "cross_pair", "meta", "zero"} <= set(metrics.index)
    doc = json.loads(out)
    rows = {r["pair"]: r for r in doc["forecasts"]}
    assert doc["run"] == "p1" and list(rows) == PAIRS
    for r in rows.values():
        assert all(isinstance(r[m], float) for m in ("tft", "cross_pair", "meta"))
        # the last bar ends at 12:00; on the 5-minute grid anchored there
        assert r["event_timestamp"] == "2024-01-11T12:00:00+00:00"
        # January 2024 is closed: the online row is served, flagged stale
        assert r["online_event_timestamp"] == "2024-01-11T12:00:00+00:00"
        assert r["fresh"] is False and r["age_minutes"] > 60 * 24


def _get(url: str, proc, deadline: float) -> dict:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=60) as reply:
                return json.load(reply)
        except urllib.error.HTTPError:
            raise
        except OSError:
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.time() < deadline, f"forecast server did not answer {url}"
            time.sleep(0.5)


def test_serve_model_gives_the_forecasts_of_predict(prod):
    settings, _ = prod
    with _env(settings):
        expected = json.loads(_bqx("predict", "p1", *PREDICT).stdout)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bqx.cli.main", "serve", "--model", "p1",
         "--port", str(port), "--hours", "3"],
        env={**os.environ, **settings.as_env(), "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        health = _get(f"{base}/health", proc, time.time() + 90)
        served = _get(f"{base}/forecasts?at={AT}", proc, time.time() + 60)
        with pytest.raises(urllib.error.HTTPError) as bad:
            _get(f"{base}/forecasts?at=yesterday-ish", proc, time.time() + 10)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert health["status"] == "ok" and health["run"] == "p1"
    assert sorted(health["models"]) == ["cross_pair", "tft"]
    assert bad.value.code == 400
    assert served["run"] == "p1"
    for row in served["forecasts"] + expected["forecasts"]:
        row.pop("age_minutes")  # the clock moved between the two calls
    assert served["forecasts"] == expected["forecasts"]  # identical numbers
