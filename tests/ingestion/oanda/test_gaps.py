"""Gap detection and repair against the fake (DuckDB and PostgreSQL)."""

from __future__ import annotations

import pandas as pd

from bqx.warehouse import open_warehouse
from ingestion.backfill import backfill
from ingestion.gaps import Gap, find_gaps, gap_report, repair_gaps
from ingestion.oanda.client import OandaClient
from ingestion.simulator import trading_minutes

PAIRS = ["EUR_USD", "USD_JPY"]
HOLES = [
    ("EUR_USD", "2024-01-04 10:00", "2024-01-04 10:07"),
    ("EUR_USD", "2024-01-05 21:50", "2024-01-07 22:05"),  # spans the weekend
    ("USD_JPY", "2024-01-04 03:30", "2024-01-04 03:31"),
]


def test_trading_sessions_follow_new_york_dst():
    winter = trading_minutes("2024-01-05 21:00", "2024-01-07 23:00")
    summer = trading_minutes("2024-07-05 20:00", "2024-07-07 22:00")
    assert winter[winter < pd.Timestamp("2024-01-06", tz="UTC")][-1].hour == 21
    assert winter[winter > pd.Timestamp("2024-01-06", tz="UTC")][0] == pd.Timestamp(
        "2024-01-07 22:00", tz="UTC"
    )
    assert summer[summer < pd.Timestamp("2024-07-06", tz="UTC")][-1].hour == 20
    assert summer[summer > pd.Timestamp("2024-07-06", tz="UTC")][0] == pd.Timestamp(
        "2024-07-07 21:00", tz="UTC"
    )


def test_gaps_found_repaired_and_confirmed(
    any_settings, fake, aim, stored_bars, expected_bars
):
    settings = aim(any_settings, fake)
    backfill(settings, PAIRS, "2024-01-01")
    full = stored_bars(settings)
    with open_warehouse(settings) as wh:
        for pair, a, b in HOLES:
            wh.execute(
                "delete from raw.candles_m1 where pair = ? and bar_start >= ? "
                "and bar_start < ?",
                [pair, pd.Timestamp(a, tz="UTC"), pd.Timestamp(b, tz="UTC")],
            )
        gaps = find_gaps(wh, PAIRS)
    # the deleted ranges show up (in-session minutes only), besides the
    # simulator's own quiet minutes, which the API will confirm empty
    keys = {(g.pair, g.start, g.end) for g in gaps}
    assert (
        "EUR_USD",
        pd.Timestamp("2024-01-04 10:00", tz="UTC"),
        pd.Timestamp("2024-01-04 10:07", tz="UTC"),
    ) in keys or any(
        g.pair == "EUR_USD"
        and g.start <= pd.Timestamp("2024-01-04 10:00", tz="UTC")
        and g.end >= pd.Timestamp("2024-01-04 10:07", tz="UTC")
        for g in gaps
    )
    weekend = [
        g
        for g in gaps
        if g.pair == "EUR_USD"
        and g.start >= pd.Timestamp("2024-01-05 21:00", tz="UTC")
        and g.start < pd.Timestamp("2024-01-08", tz="UTC")
    ]
    assert sum(g.minutes for g in weekend) <= 10 + 5  # 21:50-22:00 and 22:00-22:05
    assert all(
        not (
            pd.Timestamp("2024-01-06", tz="UTC")
            <= g.start
            < pd.Timestamp("2024-01-07 22:00", tz="UTC")
        )
        for g in gaps
    )
    report = gap_report(gaps)
    assert report["gaps"].sum() == len(gaps)
    assert report["minutes"].sum() == sum(g.minutes for g in gaps)

    client = OandaClient(settings)
    with open_warehouse(settings) as wh:
        deleted = len(full) - wh.count_candles()
        assert deleted == 7 + 10 + 5 + 1 - missing_in(fake, HOLES)
        result = repair_gaps(wh, client, gaps)
        assert result.requests == len(gaps)
        assert result.filled == deleted
        # every missing minute was either filled or confirmed empty by the API
        assert result.filled + result.confirmed_minutes == sum(g.minutes for g in gaps)
        assert result.confirmed_minutes > 0  # the simulator's quiet minutes
        assert find_gaps(wh, PAIRS) == []
        confirmed = wh.query_df(
            "select sum(minutes) as n from raw.candle_gaps_confirmed"
        )
        assert int(confirmed["n"][0]) == result.confirmed_minutes
        # confirmed ranges are not asked again
        assert repair_gaps(wh, client, find_gaps(wh, PAIRS)).requests == 0
    assert stored_bars(settings) == full == expected_bars(fake, PAIRS)


def missing_in(fake, holes) -> int:
    """In-session minutes of ``holes`` that the fake itself has no bar for."""
    n = 0
    for pair, a, b in holes:
        minutes = trading_minutes(a, b)
        have = set(pd.to_datetime(fake.market.m1(pair).start, unit="s", utc=True))
        n += sum(m not in have for m in minutes)
    return n


def test_gap_runs_group_consecutive_minutes(duck_settings):
    from ingestion.gaps import _runs

    idx = pd.DatetimeIndex(
        pd.to_datetime(
            ["2024-01-04 10:00", "2024-01-04 10:01", "2024-01-04 10:05"], utc=True
        )
    )
    assert _runs("EUR_USD", idx) == [
        Gap("EUR_USD", idx[0], idx[1] + pd.Timedelta(minutes=1)),
        Gap("EUR_USD", idx[2], idx[2] + pd.Timedelta(minutes=1)),
    ]
