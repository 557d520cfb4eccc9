"""Baselines and metrics are exact on hand-built data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.config import config_from_dict
from training.data import DataError, prepare_frame
from training.metrics import (
    baseline_forecasts,
    directional_accuracy,
    ic_series,
    ic_summary,
    metric_table,
    rmse,
)


def _cfg(label="fwd_ret_2", **kw):
    return config_from_dict(
        {"name": "t", "label": label, "features": ["x"], "every": "1min", **kw}
    )


def _hand_frame() -> pd.DataFrame:
    t = pd.date_range("2024-01-08 10:01", periods=6, freq="1min", tz="UTC")
    close = np.array([100.0, 101.0, 99.0, 102.0, 102.0, 104.0])
    fwd = np.full(6, np.nan)
    fwd[:4] = 100 * (close[2:] - close[:4]) / close[:4]
    return pd.DataFrame({"pair": "EUR_USD", "event_timestamp": t, "x": close,
                         "fwd_ret_2": fwd})


def test_persistence_is_the_last_realized_label():
    prep = prepare_frame(_hand_frame(), _cfg())
    fwd = _hand_frame()["fwd_ret_2"].to_numpy()
    # label of row n is known at row n+2: realized[n] = fwd[n-2]
    expected = [np.nan, np.nan, fwd[0], fwd[1], fwd[2], fwd[3]]
    np.testing.assert_allclose(prep["realized"], expected, equal_nan=True)
    assert prep["label_end"].iloc[0] == prep["event_timestamp"].iloc[2]
    assert prep["label_end"].iloc[4:].isna().all()
    base = baseline_forecasts(prep)
    assert (base["zero"] == 0).all()
    np.testing.assert_allclose(base["persistence"], expected, equal_nan=True)


def test_known_baseline_for_bqx_targets():
    f = _hand_frame().rename(columns={"fwd_ret_2": "target_bqx45_h15"})
    f["known_bqx45_h15"] = [0.1, 0.2, 0.3, np.nan, 0.5, 0.6]
    prep = prepare_frame(f, _cfg("target_bqx45_h15"))
    base = baseline_forecasts(prep)
    np.testing.assert_allclose(base["known"], f["known_bqx45_h15"], equal_nan=True)


def test_metrics_exact():
    pred = np.array([1.0, -1.0, 2.0, 0.5])
    y = np.array([2.0, 1.0, 2.0, -0.5])
    assert rmse(pred, y) == pytest.approx(np.sqrt((1 + 4 + 0 + 1) / 4))
    da, lo, hi = directional_accuracy(pred, y)
    assert da == 0.5 and 0 <= lo <= 0.5 <= hi <= 1
    assert np.isnan(directional_accuracy(np.zeros(4), y)[0])
    assert directional_accuracy(pred, np.array([0.0, 1.0, 2.0, -1.0]))[0] == 1 / 3


def test_ic_per_timestamp_across_pairs():
    t = pd.Timestamp("2024-01-08 10:00", tz="UTC")
    rows = []
    for k, (p, y) in enumerate([(1, 3), (2, 1), (3, 2)]):
        rows.append({"event_timestamp": t, "pair": f"P{k}", "f": p, "target": y})
    for k, (p, y) in enumerate([(1, 1), (2, 2), (3, 3)]):
        rows.append({"event_timestamp": t + pd.Timedelta("5min"), "pair": f"P{k}",
                     "f": p, "target": y})
    frame = pd.DataFrame(rows)
    ic = ic_series(frame, "f")
    np.testing.assert_allclose(ic.to_numpy(), [-0.5, 1.0])
    mean, tstat, n = ic_summary(ic)
    assert (mean, n) == (0.25, 2)
    assert tstat == pytest.approx(0.25 / (np.std([-0.5, 1.0], ddof=1) / np.sqrt(2)))
    frame["zero"] = 0.0
    frame["persistence"] = frame["target"] * 2
    table = metric_table(frame, ["f", "zero", "persistence"])
    assert table.loc["f", "ic_t_indep"] == table.loc["f", "ic_t"]
    assert np.isnan(metric_table(frame, ["f"], stride=2).loc["f", "ic_t_indep"])
    best = min(rmse(frame["zero"], frame["target"]),
               rmse(frame["persistence"], frame["target"]))
    assert table.loc["f", "rmse_ratio"] == pytest.approx(
        rmse(frame["f"], frame["target"]) / best
    )


def test_bad_frames_are_named():
    f = _hand_frame()
    with pytest.raises(DataError, match="fwd_ret_2"):
        prepare_frame(f.drop(columns="fwd_ret_2"), _cfg())
    with pytest.raises(DataError, match="duplicate"):
        prepare_frame(pd.concat([f, f.iloc[:1]]), _cfg())


def test_structurally_absent_feature_keeps_the_pair():
    f = pd.concat([_hand_frame(), _hand_frame().assign(pair="USD_JPY")])
    f["corr"] = np.where(f["pair"] == "USD_JPY", np.nan, 0.5)
    f.loc[f.index[0], "corr"] = np.nan  # a warm-up null stays null
    cfg = config_from_dict(
        {"name": "t", "label": "fwd_ret_2", "features": ["x", "corr"], "every": "1min"}
    )
    prep = prepare_frame(f, cfg)
    assert (prep.loc[prep["pair"] == "USD_JPY", "corr"] == 0).all()
    assert prep.loc[prep["pair"] == "EUR_USD", "corr"].isna().sum() == 1
