"""The fake follows each documented rule of docs/oanda-v20.md."""

from __future__ import annotations

import json
import time

import pandas as pd
import pytest
import requests

from ingestion.oanda.timefmt import format_rfc3339, parse_time, to_ns


@pytest.fixture(scope="module")
def big_market():
    """Six and a half days of three pairs: enough for the 5000-candle rules."""
    from ingestion.oanda.market import FakeMarket

    return FakeMarket.from_simulator(
        ["EUR_USD", "USD_JPY", "GBP_USD"], "2024-01-02", "2024-01-08 12:00", seed=11
    )


@pytest.fixture
def market(big_market):
    return big_market


def candles(api, fake, pair="EUR_USD", headers=None, **params):
    return api.get(
        f"{fake.url}/v3/instruments/{pair}/candles",
        params=params,
        headers=headers or {},
        timeout=10,
    )


def times(resp) -> list[pd.Timestamp]:
    return [
        pd.Timestamp(parse_time(c["time"]), tz="UTC") for c in resp.json()["candles"]
    ]


def test_auth_missing_or_bad_token_is_401(fake):
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        r = requests.get(
            f"{fake.url}/v3/instruments/EUR_USD/candles", headers=headers, timeout=5
        )
        assert r.status_code == 401
        assert r.json() == {
            "errorMessage": "Insufficient authorization to perform request."
        }
        assert r.headers["RequestID"]


def test_candle_shape_and_decimal_strings(api, fake, market):
    r = candles(
        api, fake, granularity="M1", count=3, **{"from": "2024-01-02T00:00:00Z"}
    )
    assert r.status_code == 200 and r.headers["RequestID"]
    body = r.json()
    assert body["instrument"] == "EUR_USD" and body["granularity"] == "M1"
    first = body["candles"][0]
    assert first["time"] == "2024-01-02T00:00:00.000000000Z"
    assert set(first) == {"time", "volume", "complete", "mid"}
    assert first["complete"] is True and isinstance(first["volume"], int)
    m1 = market.m1("EUR_USD")
    assert first["mid"] == {
        k: f"{v:.5f}" for k, v in zip("ohlc", (m1.o[0], m1.h[0], m1.l[0], m1.c[0]))
    }
    assert all(isinstance(v, str) for v in first["mid"].values())


def test_price_components_and_spread(api, fake):
    r = candles(
        api,
        fake,
        granularity="M1",
        count=5,
        price="MBA",
        **{"from": "2024-01-02T00:00:00Z"},
    )
    for c in r.json()["candles"]:
        assert {"mid", "bid", "ask"} <= set(c)
        for f in "ohlc":
            bid, mid, ask = (float(c[k][f]) for k in ("bid", "mid", "ask"))
            assert bid < mid < ask
    only_bid = candles(api, fake, granularity="M1", count=1, price="B").json()
    assert "bid" in only_bid["candles"][0] and "mid" not in only_bid["candles"][0]


def test_default_count_is_500_and_newest_candle_forming(api, fake, market):
    r = candles(api, fake, granularity="M1")
    cs = r.json()["candles"]
    assert len(cs) == 500
    assert [c["complete"] for c in cs[-2:]] == [True, False]
    assert parse_time(cs[-1]["time"]) // 10**9 == market.m1("EUR_USD").start[-1]


def test_count_from_and_include_first(api, fake):
    t0 = "2024-01-02T10:00:00.000000000Z"
    a = times(candles(api, fake, granularity="M1", count=10, **{"from": t0}))
    assert len(a) == 10 and a[0] == pd.Timestamp(t0)
    b = times(
        candles(
            api, fake, granularity="M1", count=10, includeFirst="FALSE", **{"from": t0}
        )
    )
    assert b[0] > pd.Timestamp(t0) and b[:9] == a[1:]
    c = times(
        candles(
            api, fake, granularity="M1", count=10, includeFirst="True", **{"from": t0}
        )
    )
    assert c == a


def test_unix_and_rfc3339_inputs_and_unix_output(api, fake):
    t0 = "2024-01-02T10:00:00Z"
    unix = str(to_ns(t0) // 10**9)
    a = candles(api, fake, granularity="M1", count=3, **{"from": t0}).json()
    b = candles(
        api,
        fake,
        granularity="M1",
        count=3,
        **{"from": unix},
        headers={"Accept-Datetime-Format": "UNIX"},
    ).json()
    assert b["candles"][0]["time"] == f"{unix}.000000000"
    assert [parse_time(c["time"]) for c in a["candles"]] == [
        parse_time(c["time"]) for c in b["candles"]
    ]


def test_from_and_to_range_and_to_only(api, fake):
    r = candles(
        api,
        fake,
        granularity="M1",
        **{"from": "2024-01-02T10:00:00Z", "to": "2024-01-02T10:30:00Z"},
    )
    ts = times(r)
    assert ts[0] == pd.Timestamp("2024-01-02T10:00Z")
    assert ts[-1] < pd.Timestamp("2024-01-02T10:30Z") and len(ts) <= 30
    back = times(
        candles(api, fake, granularity="M1", count=5, to="2024-01-02T10:30:00Z")
    )
    assert back[-1] < pd.Timestamp("2024-01-02T10:30Z") and len(back) == 5


@pytest.mark.parametrize(
    "params,message",
    [
        ({"count": "5001"}, "Maximum value for 'count' exceeded"),
        ({"count": "0"}, "Invalid value specified for 'count'"),
        (
            {"from": "2024-01-02T00:00:00Z", "to": "2024-01-06T00:00:00Z"},
            "Maximum value for 'count' exceeded",
        ),
        (
            {"to": "2031-01-01T00:00:00Z"},
            "Invalid value specified for 'to'. Time is in the future",
        ),
        ({"granularity": "M3"}, "Invalid value specified for 'granularity'"),
        ({"price": "X"}, "Invalid value specified for 'price'"),
        ({"from": "yesterday"}, "Invalid value specified for 'from'"),
        (
            {"includeFirst": "yes", "from": "2024-01-02T00:00:00Z"},
            "Invalid value specified for 'includeFirst'",
        ),
    ],
)
def test_documented_400s(api, fake, params, message):
    r = candles(api, fake, **{"granularity": "M1", **params})
    assert r.status_code == 400
    assert r.json()["errorMessage"].startswith(message)


def test_count_with_from_and_to_is_400(api, fake):
    r = candles(
        api,
        fake,
        granularity="M1",
        count=10,
        **{"from": "2024-01-02T00:00:00Z", "to": "2024-01-02T01:00:00Z"},
    )
    assert r.status_code == 400 and "'count'" in r.json()["errorMessage"]


def test_unknown_instrument_is_400(api, fake):
    r = candles(api, fake, pair="EUR_XXX", granularity="M1")
    assert r.status_code == 400
    assert r.json()["errorMessage"] == "Invalid value specified for 'instrument'"


def test_no_candles_while_market_closed(api, fake):
    # Friday 22:00 UTC (17:00 New York) to Sunday 22:00 UTC: no candles.
    r = candles(
        api, fake, granularity="M1", count=5, **{"from": "2024-01-05T21:58:00Z"}
    )
    ts = times(r)
    assert ts[:2] == [
        pd.Timestamp("2024-01-05T21:58Z"),
        pd.Timestamp("2024-01-05T21:59Z"),
    ]
    assert ts[2] == pd.Timestamp("2024-01-07T22:00Z")


def test_coarser_granularities_aggregate_m1(api, fake, market):
    m5 = candles(
        api, fake, granularity="M5", count=2, **{"from": "2024-01-02T10:00:00Z"}
    )
    m1 = candles(
        api, fake, granularity="M1", count=10, **{"from": "2024-01-02T10:00:00Z"}
    )
    first5, ones = m5.json()["candles"][0], m1.json()["candles"]
    inside = [c for c in ones if parse_time(c["time"]) < to_ns("2024-01-02T10:05Z")]
    assert first5["mid"]["o"] == inside[0]["mid"]["o"]
    assert first5["mid"]["c"] == inside[-1]["mid"]["c"]
    assert float(first5["mid"]["h"]) == max(float(c["mid"]["h"]) for c in inside)
    assert first5["volume"] == sum(c["volume"] for c in inside)
    h1 = times(
        candles(
            api, fake, granularity="H1", count=3, **{"from": "2024-01-02T10:00:00Z"}
        )
    )
    assert [t.hour for t in h1] == [10, 11, 12]


def test_daily_candles_align_to_new_york_17h(api, fake):
    d = times(
        candles(api, fake, granularity="D", count=3, **{"from": "2024-01-02T00:00:00Z"})
    )
    assert all(t.tz_convert("America/New_York").hour == 17 for t in d)
    d0 = times(
        candles(
            api,
            fake,
            granularity="D",
            count=2,
            dailyAlignment="0",
            alignmentTimezone="UTC",
            **{"from": "2024-01-02T00:00:00Z"},
        )
    )
    assert d0[0] == pd.Timestamp("2024-01-02T00:00Z")
    w = times(
        candles(api, fake, granularity="W", count=1, **{"from": "2024-01-01T00:00:00Z"})
    )
    assert w[0].tz_convert("America/New_York").day_name() == "Friday"


def test_forming_candle_grows_and_completes(api, fake, market):
    last = int(market.m1("EUR_USD").start[-1])
    fake.clock.set(last + 10)
    a = candles(api, fake, granularity="M1", count=1).json()["candles"][-1]
    fake.clock.set(last + 50)
    b = candles(api, fake, granularity="M1", count=1).json()["candles"][-1]
    fake.clock.set(last + 60)
    c = candles(api, fake, granularity="M1", count=1).json()["candles"][-1]
    assert a["time"] == b["time"] == c["time"]
    assert (a["complete"], b["complete"], c["complete"]) == (False, False, True)
    assert a["volume"] <= b["volume"] <= c["volume"]


def test_pricing_poll_and_account_check(api, fake):
    r = api.get(
        f"{fake.url}/v3/accounts/{fake.account}/pricing",
        params={"instruments": "EUR_USD,USD_JPY"},
        timeout=5,
    )
    body = r.json()
    assert r.status_code == 200 and [p["instrument"] for p in body["prices"]] == [
        "EUR_USD",
        "USD_JPY",
    ]
    p = body["prices"][0]
    assert float(p["bids"][0]["price"]) < float(p["asks"][0]["price"])
    again = api.get(
        f"{fake.url}/v3/accounts/{fake.account}/pricing",
        params={"instruments": "EUR_USD", "since": body["time"]},
        timeout=5,
    )
    assert again.json()["prices"] == []
    bad = api.get(
        f"{fake.url}/v3/accounts/nope/pricing",
        params={"instruments": "EUR_USD"},
        timeout=5,
    )
    assert bad.status_code == 400


def test_pricing_stream_prices_and_heartbeats(api, fake, market):
    fake.heartbeat_s = 0.3
    fake.clock.set(int(market.m1("EUR_USD").start[-1]) - 120, speed=30.0)
    with api.get(
        f"{fake.url}/v3/accounts/{fake.account}/pricing/stream",
        params={"instruments": "EUR_USD"},
        stream=True,
        timeout=5,
    ) as r:
        assert r.status_code == 200
        kinds, deadline = [], time.time() + 1.5
        for line in r.iter_lines():
            if line:
                kinds.append(json.loads(line)["type"])
            if time.time() > deadline:
                break
    assert "HEARTBEAT" in kinds and kinds.count("PRICE") >= 2


@pytest.mark.parametrize("kind", ["429", "503"])
def test_fault_status_then_recovery(api, fake, kind):
    fake.faults.add(kind, times=2)
    codes = [
        candles(api, fake, granularity="M1", count=1).status_code for _ in range(3)
    ]
    assert codes == [int(kind), int(kind), 200]


def test_fault_rate_limit(api, fake):
    fake.faults.rate_limit = 3
    codes = [
        candles(api, fake, granularity="M1", count=1).status_code for _ in range(6)
    ]
    assert codes.count(429) >= 3 and codes[:3] == [200, 200, 200]


def test_fault_slow_drop_truncate(api, fake):
    fake.faults.add("slow", delay=1.0)
    with pytest.raises(requests.Timeout):
        api.get(
            f"{fake.url}/v3/instruments/EUR_USD/candles",
            params={"granularity": "M1"},
            timeout=0.3,
        )
    fake.faults.add("drop")
    with pytest.raises(requests.ConnectionError):
        candles(api, fake, granularity="M1", count=1)
    fake.faults.add("truncate")
    r = candles(api, fake, granularity="M1", count=5)
    with pytest.raises(ValueError):
        json.loads(r.text)


def test_fault_duplicate_shuffle_wrong_instrument(api, fake):
    args = {"granularity": "M1", "count": 20, "from": "2024-01-02T00:00:00Z"}
    fake.faults.add("duplicate")
    dup = times(candles(api, fake, **args))
    assert len(dup) > len(set(dup)) and sorted(set(dup)) == times(
        candles(api, fake, **args)
    )
    fake.faults.add("shuffle")
    sh = times(candles(api, fake, **args))
    assert sh != sorted(sh) and sorted(sh) == times(candles(api, fake, **args))
    fake.faults.add("wrong_instrument")
    assert candles(api, fake, **args).json()["instrument"] != "EUR_USD"


def test_corrupted_candles(api, fake):
    t = "2024-01-02T00:01:00Z"
    fake.corrupt("EUR_USD", t, "non_numeric")
    fake.corrupt("EUR_USD", "2024-01-02T00:02:00Z", "off_minute")
    cs = candles(
        api, fake, granularity="M1", count=3, **{"from": "2024-01-02T00:00:00Z"}
    ).json()["candles"]
    float(cs[0]["mid"]["o"])
    with pytest.raises(ValueError):
        float(cs[1]["mid"]["o"])
    assert format_rfc3339(parse_time(cs[2]["time"])).startswith("2024-01-02T00:02:17")


def test_csv_market(tmp_path, real_bars_dir):
    import gzip

    from ingestion.oanda.market import FakeMarket

    text = (
        "time,open,high,low,close,volume\n"
        "2024-01-02T10:00:00Z,1.104270,1.104290,1.104250,1.104290,0\n"
        "2024-01-02T10:01:00Z,1.104290,1.104300,1.104280,1.104280,0\n"
    )
    with gzip.open(tmp_path / "EURUSD_202401.csv.gz", "wt") as fh:
        fh.write(text)
    m = FakeMarket.from_csv_dir(tmp_path)
    assert m.pairs == ["EUR_USD"] and m.digits["EUR_USD"] == 6
    assert list(m.m1("EUR_USD").start) == [1704189600, 1704189660]
    assert m.m1("EUR_USD").h[1] == 1.1043
    if real_bars_dir is not None:  # the real January 2024 files, when present
        real = FakeMarket.from_csv_dir(real_bars_dir, pairs=["EUR_USD"])
        assert len(real.m1("EUR_USD")) == 31402
