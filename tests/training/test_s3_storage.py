"""Runs stored on S3 (moto's server): Ray checkpoints, forecasts and the report."""

from __future__ import annotations

import boto3
import pytest
from moto.server import ThreadedMotoServer

from bqx.settings import Settings
from tests.training.conftest import experiment
from training.evaluate import evaluate_run
from training.storage import run_store
from training.train import load_model, run_experiment


@pytest.fixture
def s3_settings(monkeypatch, tmp_path):
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY":
                       "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bqx-test")
    yield Settings(_env_file=None, data_dir=tmp_path / "bqx", deployment="s3",
                   s3_bucket="bqx-test", s3_endpoint_url=endpoint)
    server.stop()


@pytest.mark.slow
def test_run_on_s3(s3_settings, ray_session, planted_frame):
    store = run_store(s3_settings)
    assert store.uri == "s3://bqx-test/runs"
    exp = experiment({"cross_pair": {}}, ensemble=["meta"], epochs=1)
    result = run_experiment(exp, planted_frame, store, run="s3run")
    ckpt = result.checkpoints["fold0"]
    assert ckpt.startswith("bqx-test/runs/s3run/fold0/checkpoint_")
    keys = {o["Key"] for o in boto3.client(
        "s3", endpoint_url=s3_settings.s3_endpoint_url
    ).list_objects_v2(Bucket="bqx-test")["Contents"]}
    assert "runs/s3run/predictions.parquet" in keys
    assert any(k.endswith("/cross_pair.ckpt") for k in keys)
    ev = evaluate_run(store, "s3run")
    assert ev.report_path == "bqx-test/runs/s3run/report/report.md"
    assert "runs/s3run/report/report.md" in {o["Key"] for o in boto3.client(
        "s3", endpoint_url=s3_settings.s3_endpoint_url
    ).list_objects_v2(Bucket="bqx-test")["Contents"]}
    assert ev.overall.loc["meta", "ic_t"] > 3
    model = load_model(store, "s3run", 0, "cross_pair")  # read back from S3
    assert list(model.hparams.pairs) == sorted(planted_frame["pair"].unique())
