from decimal import Decimal

import pandas as pd
import pytest

from bqx.warehouse import WarehouseError, open_warehouse
from ingestion.simulator import simulate_bars


@pytest.fixture
def wh(any_settings):
    with open_warehouse(any_settings) as w:
        w.ensure_schema()
        yield w


def bars(pairs=("EUR_USD", "USD_JPY"), start="2024-01-30 10:00", end="2024-02-01 12:00"):
    return simulate_bars(list(pairs), start, end, seed=3)


def test_load_twice_changes_nothing(wh):
    df = bars()
    first = wh.upsert_candles(df, source="simulator:M")
    assert (first.inserted, first.updated, first.unchanged) == (len(df), 0, 0)
    stamps = wh.query_df("select max(ingested_at) as t from raw.candles_m1")["t"][0]
    second = wh.upsert_candles(df, source="simulator:M")
    assert (second.inserted, second.updated, second.unchanged) == (0, 0, len(df))
    assert wh.count_candles() == len(df)
    again = wh.query_df("select max(ingested_at) as t from raw.candles_m1")["t"][0]
    assert again == stamps  # identical rows are not even touched


def test_changed_values_are_updated_exactly(wh):
    df = bars()
    wh.upsert_candles(df, source="simulator:M")
    changed = df.head(3).copy()
    changed["close"] = ["1.234567", "1.000001", "150.123"]
    changed["high"] = changed[["high", "close"]].astype(float).max(axis=1)
    result = wh.upsert_candles(changed, source="simulator:M")
    assert (result.inserted, result.updated, result.unchanged) == (0, 3, 0)
    got = wh.query_df(
        "select close from raw.candles_m1 where pair = ? order by bar_start limit 3",
        [changed["pair"].iloc[0]],
    )["close"]
    assert [Decimal(str(x)).quantize(Decimal("0.000001")) for x in got] == [
        Decimal("1.234567"), Decimal("1.000001"), Decimal("150.123000")
    ]


def test_prices_are_exact_decimals(wh):
    df = bars(("EUR_USD",)).head(50)
    wh.upsert_candles(df, source="simulator:M")
    stored = wh.query_df(
        "select cast(close as varchar) as c from raw.candles_m1 order by bar_start"
    )["c"]
    expected = [f"{x:.6f}" for x in df["close"]]
    assert stored.tolist() == expected


def test_watermarks_commit_with_the_bars(wh):
    df = bars(("EUR_USD",))
    last = df["bar_start"].max()
    wh.upsert_candles(df, source="oanda:M", watermarks={"EUR_USD": last})
    mark = wh.query_df("select pair, last_bar_start from raw.ingest_watermarks")
    assert mark["pair"].tolist() == ["EUR_USD"]
    assert pd.Timestamp(mark["last_bar_start"][0]) == last
    # an older watermark never moves it back
    wh.upsert_candles(df.head(5), source="oanda:M", watermarks={"EUR_USD": df["bar_start"].min()})
    mark = wh.query_df("select last_bar_start from raw.ingest_watermarks")
    assert pd.Timestamp(mark["last_bar_start"][0]) == last


def test_failed_batch_leaves_nothing(wh):
    df = bars(("EUR_USD",)).head(10)
    bad = pd.concat([df, df.head(1)])
    with pytest.raises(WarehouseError, match="repeated key"):
        wh.upsert_candles(bad, source="simulator:M", watermarks={"EUR_USD": df["bar_start"].max()})
    assert wh.count_candles() == 0
    assert wh.query_df("select count(*) as n from raw.ingest_watermarks")["n"][0] == 0


def test_quarantine_is_idempotent(wh):
    rejects = pd.DataFrame(
        {
            "source": ["csv", "csv"],
            "record_ref": ["a.csv:2", "a.csv:3"],
            "pair": ["EUR_USD", None],
            "raw_record": ["x", "y"],
            "reason": ["bad OHLC order", "unknown pair"],
        }
    )
    assert wh.quarantine(rejects) == 2
    assert wh.quarantine(rejects) == 0
    assert wh.query_df("select count(*) as n from raw.candles_rejected")["n"][0] == 2


def test_postgres_creates_monthly_partitions(pg_settings):
    with open_warehouse(pg_settings) as wh:
        wh.ensure_schema()
        wh.upsert_candles(bars(), source="simulator:M")  # spans January and February
        parts = wh.query_df(
            "select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid "
            "join pg_class p on p.oid = i.inhparent where p.relname = 'candles_m1' "
            "order by 1"
        )["relname"].tolist()
    assert parts == ["candles_m1_202401", "candles_m1_202402"]
