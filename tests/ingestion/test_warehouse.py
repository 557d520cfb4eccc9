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


def bars(
    pairs=("EUR_USD", "USD_JPY"), start="2024-01-30 10:00", end="2024-02-01 12:00"
):
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
        Decimal("1.234567"),
        Decimal("1.000001"),
        Decimal("150.123000"),
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
    wh.upsert_candles(
        df.head(5), source="oanda:M", watermarks={"EUR_USD": df["bar_start"].min()}
    )
    mark = wh.query_df("select last_bar_start from raw.ingest_watermarks")
    assert pd.Timestamp(mark["last_bar_start"][0]) == last


def test_failed_batch_leaves_nothing(wh):
    df = bars(("EUR_USD",)).head(10)
    bad = pd.concat([df, df.head(1)])
    with pytest.raises(WarehouseError, match="repeated key"):
        wh.upsert_candles(
            bad, source="simulator:M", watermarks={"EUR_USD": df["bar_start"].max()}
        )
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


def test_postgres_loads_that_store_bars_notify_listeners(pg_settings):
    """Each load that stores or changes bars wakes a listener at its commit
    (`bqx features follow` waits on this); a load that changes nothing does not."""
    import time

    from bqx.warehouse import listen_for_candles

    df = bars(end="2024-01-30 12:00")
    with open_warehouse(pg_settings) as wh:
        wh.ensure_schema()
        wait = listen_for_candles(pg_settings)
        try:
            assert wait(0.05) is False
            wh.upsert_candles(df, source="simulator:M")
            t0 = time.perf_counter()
            assert wait(30) is True
            assert time.perf_counter() - t0 < 5
            assert wait(0.2) is False  # one commit, one wake-up
            wh.upsert_candles(df, source="simulator:M")  # identical: nothing stored
            assert wait(0.5) is False
            changed = df.head(1).copy()
            changed["close"] = changed["high"] = changed["high"].astype(float) + 0.001
            wh.upsert_candles(changed, source="simulator:M")
            assert wait(30) is True
        finally:
            wait.close()


def test_batch_partly_new_partly_stored_counts_exactly(wh):
    """New rows take the direct path, stored ones the exact one: counts stay exact
    and identical stored rows keep their ingested_at."""
    df = bars()
    cut = pd.Timestamp("2024-01-31 12:00", tz="UTC")
    old = df[df["bar_start"] < cut]
    wh.upsert_candles(old, source="simulator:M")
    stamps = wh.query_df("select pair, bar_start, ingested_at from raw.candles_m1")
    batch = df.copy()
    first = batch.index[0]
    batch.loc[first, "close"] = batch.loc[first, "low"]  # one stored row changes
    result = wh.upsert_candles(batch, source="simulator:M")
    assert (result.inserted, result.updated, result.unchanged) == (
        len(df) - len(old), 1, len(old) - 1
    )  # fmt: skip
    after = wh.query_df("select pair, bar_start, ingested_at from raw.candles_m1")
    same = stamps.merge(after, on=["pair", "bar_start"], suffixes=("", "_now"))
    assert (same["ingested_at"] == same["ingested_at_now"]).sum() == len(old) - 1
    assert wh.count_candles() == len(df)
    again = wh.upsert_candles(batch, source="simulator:M")
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, len(df))


def test_extreme_prices_and_partial_quotes_round_trip(wh):
    """The binary COPY's numeric encoding (and the CSV fallback for columns with
    some nulls) store every decimal(18, 6) value exactly."""
    import pyarrow as pa

    from bqx.warehouse import PRICE

    values = ["999999999999.999999", "-999999999999.999999", "0", "0.000001",
              "-0.000001", "123.4", "10000", "99990000.0001"]  # fmt: skip
    n = len(values)
    prices = pa.array(values).cast(PRICE)
    table = pa.table({
        "pair": ["EUR_USD"] * (n - 1) + ["USD_JPY"],
        "bar_start": pa.array(
            [pd.Timestamp("2024-03-01", tz="UTC") + pd.Timedelta(minutes=i)
             for i in range(n)], pa.timestamp("us", tz="UTC")),
        "open": prices, "high": prices, "low": prices, "close": prices,
        "volume": list(range(n)),
        "bid_open": pa.array([None, "1.5"] + values[2:]).cast(PRICE),
    })  # fmt: skip
    result = wh.upsert_candles(table, source="t")
    assert result.inserted == n
    got = wh.query_df(
        "select cast(open as varchar) o, cast(bid_open as varchar) b "
        "from raw.candles_m1 order by bar_start"
    )

    def norm(x):
        return None if x is None else Decimal(x)

    assert [norm(x) for x in got["o"]] == [Decimal(v) for v in values]
    assert [norm(x) for x in got["b"]] == [None, Decimal("1.5")] + [
        Decimal(v) for v in values[2:]
    ]
    assert wh.upsert_candles(table, source="t").unchanged == n
