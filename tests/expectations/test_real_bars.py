"""The raw suite on the real January 2024 bars of ../shared/data/fx_m1."""

from __future__ import annotations

import pandas as pd
import pytest

from bqx.warehouse import open_warehouse
from expectations import validate
from ingestion.csv_import import import_files
from tests.expectations.conftest import failure_keys


def test_real_bars_pass_and_warn_only_where_the_data_is_odd(
    duck_settings, real_bars_dir
):
    if real_bars_dir is None:
        pytest.skip("../shared/data/fx_m1 is not present in this checkout")
    files = sorted(real_bars_dir.glob("*.csv.gz"))
    assert len(files) == 7
    with open_warehouse(duck_settings) as wh:
        import_files(wh, files, price="bid")

    report = validate(duck_settings, "raw")

    assert report.passed, report.failure_message()
    warned = {o.expectation: o for o in report.warnings}
    # HistData publishes no volume: every bar of every pair has volume 0
    assert set(warned) == {"zero_volume_share", "bar_move_sigma"}
    assert warned["zero_volume_share"].unexpected_count == 7  # one row per pair
    examples = warned["zero_volume_share"].examples
    assert all(float(r["zero_share"]) == 1 for r in examples)
    # news minutes (US payrolls 2024-01-05 13:30Z) are flagged, not failed
    # (all flagged keys are in quality.failures, examples are only the first few)
    flagged = failure_keys(duck_settings, "raw_candles", "bar_move_sigma")
    assert len(flagged) == warned["bar_move_sigma"].unexpected_count < 100
    payrolls = pd.Timestamp("2024-01-05 13:30", tz="UTC")
    assert {("USD_JPY", payrolls), ("USD_CHF", payrolls)} <= flagged
