"""The training benchmark's plain path (what the GPU check runs with ``--no-ray``)
reads a saved frame and imports nothing from Ray, Feast, DuckDB or dbt."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_plain_path_from_a_frame_without_ray(planted_frame, tmp_path):
    frame = tmp_path / "frame.parquet"
    planted_frame.to_parquet(frame, index=False)
    res = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_training.py"), "--no-ray",
         "--frame", str(frame), "--epochs", "2", "--reps", "1", "--limit-batches", "3",
         "--list-imports"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout
    assert "device: CPU" in out
    # 2 epochs x 3 batches of 64 samples, counted by the epoch clock
    assert re.search(r"rep 1 plain: +[\d.]+ samples/s, steady +[\d.]+ \(384 samples", out)
    assert "imported of ray, feast, duckdb, dbt: none" in out
    modules = set(out.split("top-level modules imported:")[1].split())
    assert {"torch", "lightning", "pytorch_forecasting"} <= modules
    assert not {"ray", "feast", "duckdb", "dbt", "bqx", "ingestion"} & modules
