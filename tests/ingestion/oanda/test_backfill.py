"""Backfill against the fake on both warehouses: exact, resumable, fault-proof."""

from __future__ import annotations

import pandas as pd
import pytest

from bqx.pairs import UnknownPairError
from bqx.warehouse import open_warehouse
from ingestion.backfill import BackfillError, backfill
from ingestion.oanda.client import RetryPolicy

PAIRS = ["EUR_USD", "USD_JPY", "GBP_USD"]
SINCE = "2024-01-02"
FAST_RETRY = RetryPolicy(attempts=6, initial=0.01, maximum=0.1, jitter=0.02)


def run(settings, pairs=PAIRS, **kwargs):
    from ingestion.oanda.client import OandaClient
    from ingestion.oanda.ratelimit import RateLimiter

    client = OandaClient(
        settings,
        RateLimiter(kwargs.pop("rate", 500.0)),
        timeout=kwargs.pop("timeout", 2.0),
        retry=kwargs.pop("retry", FAST_RETRY),
    )
    kwargs.setdefault("page_size", 1000)
    return backfill(
        settings, pairs, kwargs.pop("since", SINCE), client=client, **kwargs
    )


def test_backfill_equals_fake_and_rerun_is_a_no_op(
    any_settings, fake, aim, stored_bars, expected_bars
):
    settings = aim(any_settings, fake)
    first = run(settings)
    expected = expected_bars(fake)
    assert stored_bars(settings) == expected
    assert first.loaded.inserted == len(expected) and first.rejected == 0
    before = fake.requests
    again = run(settings)
    assert again.loaded.inserted == 0 and again.loaded.updated == 0
    assert fake.requests - before == len(PAIRS)  # one short page per pair
    assert stored_bars(settings) == expected
    with open_warehouse(settings) as wh:
        marks = wh.query_df("select pair, last_bar_start from raw.ingest_watermarks")
    last = {p: max(b[1] for b in expected if b[0] == p) for p in PAIRS}
    assert {
        r.pair: pd.Timestamp(r.last_bar_start).tz_convert("UTC")
        for r in marks.itertuples()
    } == last


def test_until_then_resume_from_watermark(
    duck_settings, fake, aim, stored_bars, expected_bars
):
    settings = aim(duck_settings, fake)
    run(settings, until="2024-01-05 12:00")
    part = stored_bars(settings)
    assert part and max(b[1] for b in part) < pd.Timestamp("2024-01-05 12:00", tz="UTC")
    assert part == [
        b
        for b in expected_bars(fake)
        if b[1] < pd.Timestamp("2024-01-05 12:00", tz="UTC")
    ]
    summary = run(settings)
    assert all(
        s.start == pd.Timestamp("2024-01-05 11:59", tz="UTC")
        for s in summary.pairs.values()
    )
    assert stored_bars(settings) == expected_bars(fake)


def test_forming_candle_is_not_stored_until_complete(
    duck_settings, fake, aim, stored_bars, expected_bars
):
    settings = aim(duck_settings, fake)
    run(settings, pairs=["EUR_USD"])
    last = int(fake.market.m1("EUR_USD").start[-1])
    stored = stored_bars(settings, ["EUR_USD"])
    assert stored[-1][1] < pd.Timestamp(last, unit="s", tz="UTC")
    fake.clock.set(last + 60)
    run(settings, pairs=["EUR_USD"])
    assert stored_bars(settings, ["EUR_USD"]) == expected_bars(fake, ["EUR_USD"])
    assert stored_bars(settings, ["EUR_USD"])[-1][1] == pd.Timestamp(
        last, unit="s", tz="UTC"
    )


FAULTS = [
    ("429", {"times": 3, "every": 2}),
    ("500", {"times": 2}),
    ("503", {"times": 3, "every": 3}),
    ("slow", {"times": 2, "delay": 1.5}),
    ("drop", {"times": 3, "every": 2}),
    ("truncate", {"times": 3, "every": 2}),
    ("duplicate", {"times": None}),
    ("shuffle", {"times": None}),
]


@pytest.mark.parametrize("kind,opts", FAULTS, ids=[f[0] for f in FAULTS])
def test_each_fault_ends_identical(
    duck_settings, fake, aim, stored_bars, expected_bars, kind, opts
):
    settings = aim(duck_settings, fake)
    fault = fake.faults.add(kind, **opts)
    summary = run(settings, timeout=0.5)
    assert fault.fired >= 1
    assert stored_bars(settings) == expected_bars(fake)
    assert summary.rejected == 0
    if kind not in ("duplicate", "shuffle"):
        assert summary.retries >= fault.fired


def test_all_faults_at_once_end_identical(
    any_settings, fake, aim, stored_bars, expected_bars
):
    settings = aim(any_settings, fake)
    faults = [
        fake.faults.add(kind, **{**opts, "after": i})
        for i, (kind, opts) in enumerate(FAULTS)
    ]
    summary = run(settings, timeout=0.5, retry=RetryPolicy(8, 0.01, 0.1, 0.02))
    assert all(f.fired for f in faults)
    assert stored_bars(settings) == expected_bars(fake) and summary.rejected == 0


def test_rate_limit_fault_and_client_limiter(
    duck_settings, fake, aim, stored_bars, expected_bars
):
    settings = aim(duck_settings, fake)
    fake.faults.rate_limit = 10
    summary = run(settings, rate=8.0, page_size=500)
    assert stored_bars(settings) == expected_bars(fake)
    assert summary.requests >= 18 and summary.retries <= 2


def test_permanent_fault_names_pair_range_status_and_keeps_stored(
    any_settings, fake, aim, stored_bars, expected_bars
):
    settings = aim(any_settings, fake)
    fake.faults.add("503", times=None, after=2, pair="USD_JPY")
    with pytest.raises(BackfillError) as info:
        run(settings, retry=RetryPolicy(3, 0.01, 0.05, 0.01))
    message = str(info.value)
    assert "USD_JPY" in message and "HTTP 503" in message
    assert "2024-01-0" in message and "..now" in message
    stored = stored_bars(settings)
    expected = expected_bars(fake)
    others = [b for b in expected if b[0] != "USD_JPY"]
    assert [b for b in stored if b[0] != "USD_JPY"] == others
    jpy = [b for b in stored if b[0] == "USD_JPY"]
    assert jpy and set(jpy) <= set(expected) and len(jpy) == 2000
    fake.faults.clear()
    run(settings)
    assert stored_bars(settings) == expected


def test_400_and_401_are_not_retried(duck_settings, fake, aim):
    settings = aim(duck_settings, fake).model_copy()
    from pydantic import SecretStr

    bad = settings.model_copy(update={"oanda_token": SecretStr("wrong")})
    with pytest.raises(BackfillError, match="HTTP 401"):
        run(bad, pairs=["EUR_USD"])
    assert fake.requests == 1
    with pytest.raises(BackfillError, match="HTTP 400"):
        run(settings, pairs=["EUR_USD"], page_size=6000)
    assert fake.requests == 2


MALFORMED = {
    ("EUR_USD", "2024-01-04T01:00:00Z"): ("non_numeric", "non-numeric price"),
    ("EUR_USD", "2024-01-04T01:01:00Z"): ("high_lt_low", "high"),
    ("USD_JPY", "2024-01-04T02:00:00Z"): ("off_minute", "not on a whole"),
    ("GBP_USD", "2024-01-04T03:00:00Z"): ("missing_field", "missing field"),
}


def test_malformed_candles_are_quarantined(
    any_settings, fake, aim, stored_bars, expected_bars
):
    settings = aim(any_settings, fake)
    for (pair, t), (kind, _) in MALFORMED.items():
        fake.corrupt(pair, t, kind)
    fake.faults.add("wrong_instrument", pair="GBP_USD", after=1, times=1)
    summary = run(settings)
    with open_warehouse(settings) as wh:
        rej = wh.query_df(
            "select source, record_ref, pair, raw_record, reason "
            "from raw.candles_rejected order by record_ref"
        )
    bad_keys = {(p, pd.Timestamp(t)) for p, t in MALFORMED}
    for (pair, t), (_, words) in MALFORMED.items():
        hits = rej[
            rej["record_ref"].str.startswith(pair) & rej["reason"].str.contains(words)
        ]
        assert len(hits) == 1, (pair, t, rej)
    wrong = rej[rej["reason"].str.contains("instrument")]
    assert len(wrong) == 1000 and (wrong["pair"] == "GBP_USD").all()
    assert summary.rejected == len(rej) == summary.quarantined
    stored = stored_bars(settings)
    assert not {(b[0], b[1]) for b in stored} & bad_keys
    wrong_keys = {
        ("GBP_USD", pd.Timestamp(r.split(":", 1)[1])) for r in wrong["record_ref"]
    }
    assert stored == [
        b for b in expected_bars(fake) if (b[0], b[1]) not in bad_keys | wrong_keys
    ]
    # a rerun quarantines nothing twice and loads nothing
    fake.faults.clear()
    again = run(settings, since="2024-01-01")
    assert again.quarantined == 0


def test_unknown_pair_refused_before_any_request_or_sql(duck_settings, fake, aim):
    settings = aim(duck_settings, fake)
    with pytest.raises(UnknownPairError, match="EUR_XYZ"):
        run(settings, pairs=["EUR_USD", "EUR_XYZ"])
    assert fake.requests == 0
    assert not settings.duckdb_path.exists()


def test_mba_stores_bid_ask_and_spread(any_settings, fake, aim):
    settings = aim(any_settings, fake)
    run(settings, pairs=["EUR_USD"], price="MBA", until="2024-01-04 06:00")
    with open_warehouse(settings) as wh:
        df = wh.query_df(
            "select cast(open as varchar) o, cast(bid_open as varchar) bo, "
            "cast(ask_open as varchar) ao, cast(ask_close - bid_close as varchar) d, "
            "cast(spread as varchar) s, source from raw.candles_m1"
        )
    assert len(df) > 300 and (df["source"] == "oanda:MBA").all()
    from decimal import Decimal

    for r in df.itertuples():
        assert Decimal(r.bo) < Decimal(r.o) < Decimal(r.ao)
        assert Decimal(r.d) == Decimal(r.s) > 0


def test_stop_event_ends_a_backfill_early_and_consistently(
    duck_settings, fake, aim, stored_bars, expected_bars
):
    import threading

    settings = aim(duck_settings, fake)
    fake.latency = 0.05
    stop = threading.Event()
    threading.Timer(0.6, stop.set).start()
    run(settings, page_size=200, stop=stop)
    part = stored_bars(settings)
    assert 0 < len(part) < len(expected_bars(fake))
    assert set(part) <= set(expected_bars(fake))
    fake.latency = 0.0
    run(settings)  # resumes from the watermarks
    assert stored_bars(settings) == expected_bars(fake)
