import numpy as np
import pandas as pd
import pytest

from bqx.pairs import UNIVERSE_28, triangles
from ingestion.simulator import market_open_mask, simulate_bars

START, END = "2024-01-03", "2024-01-10"  # Wednesday to Wednesday: one weekend


@pytest.fixture(scope="module")
def bars():
    return simulate_bars(UNIVERSE_28, START, END, seed=11)


def test_shape_and_types(bars):
    assert set(bars["pair"]) == set(UNIVERSE_28)
    assert str(bars["bar_start"].dtype) == "datetime64[ns, UTC]"
    assert (bars["bar_start"].dt.second == 0).all()
    assert not bars.duplicated(["pair", "bar_start"]).any()
    per_pair = bars.groupby("pair").size()
    # 5 trading days = 7200 minutes, minus a few random missing ones
    assert per_pair.between(7100, 7200).all()
    assert (per_pair < 7200).any(), "some random minutes must be missing"


def test_no_bars_while_the_market_is_closed(bars):
    ny = bars["bar_start"].dt.tz_convert("America/New_York")
    friday_late = (ny.dt.dayofweek == 4) & (ny.dt.hour >= 17)
    sunday_early = (ny.dt.dayofweek == 6) & (ny.dt.hour < 17)
    assert not (friday_late | sunday_early | (ny.dt.dayofweek == 5)).any()
    # and the market does reopen on Sunday 17:00 New York (22:00 UTC in January)
    assert (bars["bar_start"] == pd.Timestamp("2024-01-07 22:00", tz="UTC")).any()


def test_market_hours_follow_us_daylight_saving():
    idx = pd.DatetimeIndex(
        ["2024-03-08 21:30", "2024-03-08 22:30", "2024-03-15 20:30", "2024-03-15 21:30"],
        tz="UTC",
    )
    # EST until 10 March: closes 22:00 UTC; EDT after: closes 21:00 UTC
    assert market_open_mask(idx).tolist() == [True, False, True, False]


def test_ohlc_order_and_positive_prices(bars):
    assert (bars[["open", "high", "low", "close"]] > 0).all().all()
    assert (bars["low"] <= bars[["open", "close"]].min(axis=1)).all()
    assert (bars["high"] >= bars[["open", "close"]].max(axis=1)).all()
    assert (bars["volume"] >= 1).all()


def test_realistic_levels(bars):
    last = bars.groupby("pair")["close"].last()
    assert 1.0 < last["EUR_USD"] < 1.2
    assert 120 < last["USD_JPY"] < 170
    # JPY pairs quote 3 decimals, others 5
    jpy = bars.loc[bars["pair"] == "USD_JPY", "close"]
    assert np.allclose(jpy * 1000, np.round(jpy * 1000))


def test_triangles_hold_to_about_a_basis_point(bars):
    wide = bars.pivot(index="bar_start", columns="pair", values="close")
    errors = []
    for tri in triangles(UNIVERSE_28):
        synthetic = tri.first.sign * np.log(wide[tri.first.pair]) + tri.second.sign * np.log(
            wide[tri.second.pair]
        )
        errors.append(1e4 * (np.log(wide[tri.pair]) - synthetic))
    err = pd.concat(errors).dropna().abs()
    assert err.mean() < 1.0
    assert 0.05 < err.median() < 1.0
    assert err.max() < 5.0


def test_fat_tails_and_intraday_seasonality(bars):
    eur = bars[bars["pair"] == "EUR_USD"].set_index("bar_start")["close"]
    r = np.log(eur).diff().dropna()
    kurtosis = ((r - r.mean()) ** 4).mean() / r.var() ** 2
    assert kurtosis > 4  # a normal walk gives 3
    by_hour = r.abs().groupby(r.index.hour).mean()
    assert by_hour.loc[13:15].mean() > 1.5 * by_hour.loc[20:22].mean()


def test_deterministic_and_independent_of_the_subset(bars):
    again = simulate_bars(["USD_JPY", "EUR_USD"], START, END, seed=11)
    mine = bars[bars["pair"].isin(["EUR_USD", "USD_JPY"])]
    pd.testing.assert_frame_equal(
        again.sort_values(["pair", "bar_start"]).reset_index(drop=True),
        mine.sort_values(["pair", "bar_start"]).reset_index(drop=True),
    )
    other = simulate_bars(["EUR_USD"], START, END, seed=12)
    assert not np.allclose(other["close"].to_numpy()[:100], mine["close"].to_numpy()[:100])


def test_empty_range_and_bad_pair():
    assert simulate_bars(["EUR_USD"], "2024-01-06", "2024-01-07").empty  # Saturday
    with pytest.raises(ValueError, match="XXX_YYY"):
        simulate_bars(["XXX_YYY"], START, END)
