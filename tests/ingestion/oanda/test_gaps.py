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


def test_quarantined_minutes_listed_apart_and_rechecked_once(
    any_settings, fake, aim, stored_bars, expected_bars
):
    from ingestion.gaps import QUARANTINED
    from ingestion.oanda.client import RetryPolicy
    from ingestion.oanda.ratelimit import RateLimiter

    settings = aim(any_settings, fake)
    bad = {
        pd.Timestamp("2024-01-04 01:00", tz="UTC"): ("non_numeric", "non-numeric"),
        pd.Timestamp("2024-01-04 01:01", tz="UTC"): ("high_lt_low", "high"),
    }
    for t, (kind, _) in bad.items():
        fake.corrupt("EUR_USD", t, kind)
    fake.faults.add("wrong_instrument", pair="EUR_USD", after=1, times=1)
    client = OandaClient(settings, RateLimiter(500.0), timeout=2.0,
                         retry=RetryPolicy(4, 0.01, 0.05, 0.01))  # fmt: skip
    backfill(settings, ["EUR_USD"], "2024-01-04", page_size=1000, client=client)
    with open_warehouse(settings) as wh:
        gaps = find_gaps(wh, ["EUR_USD"])
        held = [g for g in gaps if g.status == QUARANTINED]
        # the transient wrong-instrument page: 1000 minutes, one reason
        assert sum(g.minutes for g in held) == 1000 + 2
        assert not any(g.rechecked for g in held)
        assert {g.start for g in held if g.minutes == 1} >= set(bad)
        for t, (_, words) in bad.items():
            (g,) = [g for g in held if g.start == t]
            assert words in g.reason and g.end == t + pd.Timedelta(minutes=1)
        wrong = [g for g in held if "instrument" in (g.reason or "")]
        assert sum(g.minutes for g in wrong) == 1000
        missing = [g for g in gaps if g.status != QUARANTINED]
        held_minutes = {
            m for g in held for m in pd.date_range(g.start, g.end, freq="min")[:-1]
        }
        assert not any(g.start in held_minutes for g in missing)
        report = gap_report(gaps)
        assert report[report["status"] == QUARANTINED]["minutes"].sum() == 1002

        fake.faults.clear()
        result = repair_gaps(wh, client, gaps)
        assert result.filled == 1000  # asked again: valid now
        assert result.quarantined_minutes == 2  # malformed again: recorded
        left = find_gaps(wh, ["EUR_USD"])
        assert [(g.start, g.status, g.rechecked) for g in left] == [
            (t, QUARANTINED, True) for t in sorted(bad)
        ]
        assert all(words in g.reason for g, (_, words) in zip(left, bad.values()))
        before = fake.requests
        again = repair_gaps(wh, client, left)
        assert again.requests == 0 and again.skipped == 2
        assert fake.requests == before
    client.close()
    keys = {("EUR_USD", t) for t in bad}
    assert stored_bars(settings) == [
        b for b in expected_bars(fake, ["EUR_USD"])
        if (b[0], b[1]) not in keys and b[1] >= pd.Timestamp("2024-01-04", tz="UTC")
    ]  # fmt: skip
