"""``bqx train`` / ``bqx evaluate`` through Ray Train on CPU, local and S3 storage."""

from __future__ import annotations

import pandas as pd
import pytest
import typer
import yaml
from typer.testing import CliRunner

from bqx.cli.train import register
from bqx.settings import get_settings
from tests.training.conftest import experiment
from training.predict import predict_frame
from training.storage import RunNotFoundError, run_store


@pytest.fixture
def cli(monkeypatch, tmp_path):
    monkeypatch.setenv("BQX_DATA_DIR", str(tmp_path / "bqx"))
    monkeypatch.setenv("BQX_DEPLOYMENT", "local")
    get_settings.cache_clear()
    app = typer.Typer()
    register(app)
    yield app
    get_settings.cache_clear()


def _write(tmp_path, frame, exp) -> tuple[str, str]:
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(yaml.safe_dump(exp.to_dict()))
    data = tmp_path / "frame.parquet"
    frame.to_parquet(data)
    return str(cfg), str(data)


@pytest.mark.slow
def test_train_evaluate_predict_via_cli(cli, ray_session, planted_frame, tmp_path):
    exp = experiment({"tft": {}, "cross_pair": {}}, ensemble=["moe", "meta"], epochs=1)
    cfg, data = _write(tmp_path, planted_frame, exp)
    runner = CliRunner()
    res = runner.invoke(cli, ["train", "--config", cfg, "--frame", data, "--run", "r1"])
    assert res.exit_code == 0, res.output
    store = run_store(get_settings())
    preds = store.get_frame("r1", "predictions.parquet")
    test = preds[preds["segment"] == "test"]
    for col in ("tft", "cross_pair", "moe", "meta"):
        assert test[col].notna().mean() > 0.95, col

    res = runner.invoke(cli, ["evaluate", "r1"])
    assert res.exit_code == 0, res.output
    report = (tmp_path / "bqx" / "runs" / "r1" / "report")
    md = (report / "report.md").read_text()
    assert "persistence" in md and "tft_importance.png" in md
    for png in ("pred_vs_real.png", "cumulative_ic.png", "tft_attention.png"):
        assert (report / png).stat().st_size > 1000
    metrics = pd.read_csv(report / "metrics.csv", index_col=0)
    for col in ("tft", "cross_pair", "meta"):  # the planted signal is found
        assert metrics.loc[col, "ic_t"] > 3, col
        assert metrics.loc[col, "rmse_ratio"] < 1, col
    recent = planted_frame.groupby("pair").tail(600)
    live = predict_frame(store, "r1", recent)
    assert set(live["pair"]) == set(planted_frame["pair"])
    assert live[["tft", "cross_pair", "moe", "meta"]].notna().all().all()
    # forecasts are made at the latest row whose features are complete
    complete = recent.dropna(subset=["bqx_45", "ret_std_45", "signal"])
    assert (live["event_timestamp"] == complete["event_timestamp"].max()).all()


def test_unknown_run_and_bad_config_are_one_line_errors(cli, tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["evaluate", "nope"])
    assert res.exit_code != 0 and isinstance(res.exception, Exception)
    assert "nope" in str(res.exception)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nlabel: close\nfeatures: [a]\n")
    res = runner.invoke(cli, ["train", "--config", str(bad), "--frame", "x.parquet"])
    assert "close" in str(res.exception)
    with pytest.raises(RunNotFoundError):
        run_store(get_settings()).get_bytes("nope", "config.yaml")


def test_serve_model_of_an_unknown_run_is_a_one_line_error(cli):
    from bqx.cli.main import app

    res = CliRunner().invoke(app, ["serve", "--model", "nope", "--port", "1"])
    assert res.exit_code != 0
    assert "run 'nope'" in str(res.exception)
