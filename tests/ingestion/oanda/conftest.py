"""Fixtures for the OANDA tests: a simulated market and a running fake server."""

from __future__ import annotations

import pytest
import requests
from pydantic import SecretStr

from ingestion.oanda.fake import FakeOanda
from ingestion.oanda.market import FakeMarket

PAIRS = ["EUR_USD", "USD_JPY", "GBP_USD"]
#: Thursday 2024-01-04 00:00 to Monday 2024-01-08 06:00 UTC: a weekend inside.
START, END = "2024-01-04", "2024-01-08 06:00"


@pytest.fixture(scope="session")
def market() -> FakeMarket:
    """Simulated M1 bars of three pairs over four days (a weekend included)."""
    return FakeMarket.from_simulator(PAIRS, START, END, seed=11)


@pytest.fixture
def fake(market: FakeMarket):
    """A running fake (fresh faults and clock per test)."""
    with FakeOanda(market) as server:
        yield server


@pytest.fixture
def api(fake: FakeOanda) -> requests.Session:
    """A plain HTTP session with the fake's token, for conformance checks."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {fake.token}"
    yield session
    session.close()


def point_at(settings, fake: FakeOanda):
    """``settings`` with the OANDA client aimed at ``fake``."""
    return settings.model_copy(
        update={
            "oanda_env": "custom",
            "oanda_url": fake.url,
            "oanda_token": SecretStr(fake.token),
            "oanda_account": fake.account,
        }
    )


def _stored(settings, pairs=None) -> list[tuple]:
    """Rows of raw.candles_m1 as (pair, bar_start, o, h, l, c, volume) Decimals."""
    from decimal import Decimal

    import pandas as pd

    from bqx.warehouse import open_warehouse

    with open_warehouse(settings) as wh:
        df = wh.query_df(
            "select pair, bar_start, cast(open as varchar) as o, cast(high as varchar) "
            "as h, cast(low as varchar) as l, cast(close as varchar) as c, volume "
            "from raw.candles_m1 order by pair, bar_start"
        )
    if pairs:
        df = df[df["pair"].isin(pairs)]
    return [
        (
            r.pair,
            pd.Timestamp(r.bar_start).tz_convert("UTC"),
            Decimal(r.o),
            Decimal(r.h),
            Decimal(r.l),
            Decimal(r.c),
            int(r.volume),
        )
        for r in df.itertuples(index=False)
    ]


def _expected(fake, pairs=None) -> list[tuple]:
    """The fake's complete M1 bars in the same shape as :func:`_stored`."""
    from decimal import Decimal

    df = fake.market.complete_bars(fake.clock.now())
    if pairs:
        df = df[df["pair"].isin(pairs)]
    df = df.sort_values(["pair", "bar_start"])
    out = []
    for r in df.itertuples(index=False):
        d = fake.market.digits[r.pair]
        out.append(
            (
                r.pair,
                r.bar_start,
                *(Decimal(f"{x:.{d}f}") for x in (r.open, r.high, r.low, r.close)),
                int(r.volume),
            )
        )
    return out


@pytest.fixture
def aim():
    """``aim(settings, fake)``: settings with the OANDA client aimed at ``fake``."""
    return point_at


@pytest.fixture
def stored_bars():
    """``stored_bars(settings, pairs=None)``: the warehouse's M1 bars, exactly."""
    return _stored


@pytest.fixture
def expected_bars():
    """``expected_bars(fake, pairs=None)``: the fake's complete bars, exactly."""
    return _expected
