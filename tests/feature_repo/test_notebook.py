"""The training-set notebook runs top to bottom on a local deployment."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pyarrow.parquet as pq
from nbclient import NotebookClient

from bqx import features
from bqx.warehouse import open_warehouse
from ingestion.simulator import simulate_bars
from tests.conftest import make_settings

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "training_set.ipynb"


def test_notebook_executes_and_saves_a_dataset(tmp_path, monkeypatch):
    pairs = ["EUR_USD", "USD_JPY", "EUR_JPY"]
    settings = make_settings(tmp_path / "nbdata", pairs=",".join(pairs))
    with open_warehouse(settings) as wh:
        wh.ensure_schema()
        wh.upsert_candles(
            simulate_bars(pairs, "2024-01-09", "2024-01-11", seed=4), source="simulator:M"
        )
    features.build(settings)
    features.apply(settings)
    for key, value in settings.as_env().items():
        monkeypatch.setenv(key, value)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()  # fmt: skip
    assert (settings.data_dir / "training_set.png").stat().st_size > 10_000
    saved = settings.data_dir / "datasets" / "training_set.parquet"
    meta = pq.read_schema(saved).metadata
    assert meta[b"bqx.feature_service"] == b"tft_v1"
    assert len(meta[b"bqx.git_revision"]) >= 7
    assert pq.read_metadata(saved).num_rows == len(pairs) * (24 * 12 + 1)
    assert os.environ["BQX_DATA_DIR"] == str(settings.data_dir)
