"""The walking skeleton on both deployments: bars -> dbt (bqx) -> Feast.

Checks the bqx momentum values against numpy, the point-in-time rule of features.md
(an entity at bar end t sees the bar that started at t - 1 min, never a later one)
and that online values equal the last offline row of each pair.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bqx import features
from bqx.warehouse import open_warehouse
from ingestion.simulator import simulate_bars

PAIRS = ["EUR_USD", "USD_JPY", "EUR_JPY"]
WINDOWS = (45, 90, 180, 360, 720, 1440, 2880)
START, END = "2024-01-08 00:00", "2024-01-11 12:00"


def numpy_bqx(bars: pd.DataFrame) -> pd.DataFrame:
    """features.md item 2, computed independently with numpy."""
    out = []
    for pair, g in bars.sort_values("bar_start").groupby("pair"):
        c = g["close"].to_numpy(dtype=float)
        row = {"pair": pair, "bar_start_at": g["bar_start"].to_numpy()}
        for w in WINDOWS:
            v = np.full(len(c), np.nan)
            v[w:] = 100 * (c[w:] - c[:-w]) / c[:-w]
            row[f"bqx_{w}"] = v
        out.append(pd.DataFrame(row))
    return pd.concat(out, ignore_index=True)


def deploy(settings):
    bars = simulate_bars(PAIRS, START, END, seed=5)
    with open_warehouse(settings) as wh:
        wh.ensure_schema()
        wh.upsert_candles(bars, source="simulator:M")
    features.build(settings)
    features.publish(settings)
    with open_warehouse(settings) as wh:
        mart = wh.query_df("select * from marts.features_bqx order by pair, bar_start_at")
    for col in ("bar_start_at", "event_timestamp"):
        mart[col] = pd.to_datetime(mart[col], utc=True)
    for w in WINDOWS:
        mart[f"bqx_{w}"] = mart[f"bqx_{w}"].astype(float)
    return bars, mart


@pytest.fixture(params=["local", "production"])
def deployed(request, tmp_path):
    from tests.conftest import make_settings

    if request.param == "local":
        settings = make_settings(tmp_path / "bqx", pairs=",".join(PAIRS))
    else:
        settings = request.getfixturevalue("redis_settings").model_copy(
            update={"pairs": ",".join(PAIRS)}
        )
    bars, mart = deploy(settings)
    return settings, bars, mart


def test_skeleton(deployed):
    settings, bars, mart = deployed

    # 1. bqx equals numpy on the same bars
    ref = numpy_bqx(bars)
    ref["bar_start_at"] = pd.to_datetime(ref["bar_start_at"], utc=True)
    merged = ref.merge(mart, on=["pair", "bar_start_at"], suffixes=("_ref", ""))
    assert len(merged) == len(bars) == len(mart)
    assert (mart["event_timestamp"] - mart["bar_start_at"] == pd.Timedelta("1min")).all()
    for w in WINDOWS:
        a, b = merged[f"bqx_{w}_ref"], merged[f"bqx_{w}"]
        assert (a.isna() == b.isna()).all(), w
        assert np.allclose(a[a.notna()], b[b.notna()], rtol=1e-9, atol=1e-12), w
    assert mart["bqx_2880"].notna().sum() > 0
    if settings.deployment == "local":  # Feast reads the Parquet copy of the mart
        parquet = pd.read_parquet(settings.marts_dir / "features_bqx")
        assert len(parquet) == len(mart)
        assert str(parquet["event_timestamp"].dtype).endswith("UTC]")

    # 2. point in time: at bar end t, the bar that started at t - 1 min; one
    # second earlier, the bar before it
    sample = mart[mart["bqx_45"].notna()].sample(300, random_state=1)
    entity = pd.DataFrame(
        {
            "pair": np.concatenate([sample["pair"], sample["pair"]]),
            "event_timestamp": np.concatenate(
                [sample["event_timestamp"], sample["event_timestamp"] - pd.Timedelta("1s")]
            ),
        }
    )
    entity["event_timestamp"] = pd.to_datetime(entity["event_timestamp"], utc=True)
    frame = features.training_frame(
        PAIRS, None, None, service="online_v1", settings=settings, entity_df=entity
    )
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    prev = mart.copy()
    prev["next_end"] = prev.groupby("pair")["event_timestamp"].shift(-1)
    exact = frame.merge(mart, on=["pair", "event_timestamp"], suffixes=("", "_mart"))
    assert len(exact) == len(sample)
    assert np.allclose(exact["bqx_45"], exact["bqx_45_mart"], rtol=1e-12)
    earlier = frame.merge(
        prev.assign(event_timestamp=prev["next_end"] - pd.Timedelta("1s")),
        on=["pair", "event_timestamp"],
        suffixes=("", "_mart"),
    )
    assert len(earlier) == len(sample)
    both = earlier["bqx_45_mart"].notna()
    assert np.allclose(earlier.loc[both, "bqx_45"], earlier.loc[both, "bqx_45_mart"])

    # 3. online values equal the last offline row of each pair
    online = features.online_values(settings, PAIRS).set_index("pair")
    last = mart.sort_values("event_timestamp").groupby("pair").tail(1).set_index("pair")
    for w in WINDOWS:
        assert np.allclose(
            online.loc[PAIRS, f"bqx_{w}"].astype(float), last.loc[PAIRS, f"bqx_{w}"]
        ), w


def test_real_january_bars_match_numpy(real_bars_dir, tmp_path):
    """Import the real bars of ../shared/data/fx_m1, build bqx, compare with numpy."""
    from ingestion.csv_import import import_files
    from tests.conftest import make_settings

    if real_bars_dir is None:
        pytest.skip("../shared/data/fx_m1 is not present")
    pairs = ["EUR_USD", "USD_JPY", "GBP_USD"]
    settings = make_settings(tmp_path / "bqx", pairs=",".join(pairs))
    files = [real_bars_dir / f"{p.replace('_', '')}_202401.csv.gz" for p in pairs]
    with open_warehouse(settings) as wh:
        import_files(wh, files, price="bid")
        bars = wh.query_df("select pair, bar_start, close from raw.candles_m1")
    bars["close"] = bars["close"].astype(float)
    bars["bar_start"] = pd.to_datetime(bars["bar_start"], utc=True)
    features.build(settings, select="+features_bqx")
    mart = pd.read_parquet(settings.marts_dir / "features_bqx")
    mart["bar_start_at"] = pd.to_datetime(mart["bar_start_at"], utc=True)
    ref = numpy_bqx(bars)
    ref["bar_start_at"] = pd.to_datetime(ref["bar_start_at"], utc=True)
    merged = ref.merge(mart, on=["pair", "bar_start_at"], suffixes=("_ref", ""))
    assert len(merged) == len(bars) == 31402 + 31747 + 31637
    for w in WINDOWS:
        a, b = merged[f"bqx_{w}_ref"], merged[f"bqx_{w}"].astype(float)
        assert (a.isna() == b.isna()).all(), w
        assert np.allclose(a[a.notna()], b[b.notna()], rtol=1e-9, atol=1e-12), w
