"""The raw_candles suite on real and corrupted bars, on both warehouses."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
from pydantic import SecretStr

from bqx.warehouse import open_warehouse
from expectations import (
    GateConfig,
    GateError,
    QualityGateError,
    require_pass,
    validate,
)
from tests.expectations.conftest import failure_keys, load_bars, offending

SUITE = "raw_candles"
T = pd.Timestamp


@pytest.fixture(scope="module")
def loaded(module_settings):
    """The module's warehouse with the simulated bars loaded."""
    return module_settings, load_bars(module_settings)


def test_clean_simulated_bars_pass(loaded):
    settings, _ = loaded
    report = validate(settings, "raw")
    assert report.suites == [SUITE]
    assert len(report.outcomes) == 15
    assert [o.expectation for o in report.outcomes if not o.success] == []
    assert report.passed and report.failures_written == 0
    if settings.warehouse == "duckdb":  # the file is free for dbt (a child process)
        code = (
            f"import duckdb; duckdb.connect({str(settings.duckdb_path)!r})"
            ".execute('create schema if not exists probe')"
        )
        child = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, check=False
        )
        assert child.returncode == 0, child.stderr.decode()[-400:]


def _bar(bars: pd.DataFrame, pair: str, at: str) -> pd.Series:
    row = bars[(bars["pair"] == pair) & (bars["bar_start"] == T(at, tz="UTC"))]
    assert len(row) == 1, (pair, at)
    return row.iloc[0]


def test_corrupted_bars_fail_the_right_expectations(loaded):
    settings, bars = loaded
    high_low = ("EUR_USD", T("2024-01-04 10:00", tz="UTC"))
    spike = ("USD_JPY", T("2024-01-05 14:30", tz="UTC"))
    weekend = ("EUR_JPY", T("2024-01-06 12:00", tz="UTC"))  # a Saturday
    with open_warehouse(settings) as wh:
        wh.execute(
            "update raw.candles_m1 set high = low - 0.001 "
            f"where pair = '{high_low[0]}' and bar_start = '{high_low[1].isoformat()}'"
        )
        wh.execute(
            "update raw.candles_m1 set open = open * 1.2, high = high * 1.2, "
            "low = low * 1.2, close = close * 1.2 "
            f"where pair = '{spike[0]}' and bar_start = '{spike[1].isoformat()}'"
        )
        friday = _bar(bars, "EUR_JPY", "2024-01-05 21:00")
        sat = pd.DataFrame([{**friday.to_dict(), "bar_start": weekend[1]}])
        wh.upsert_candles(sat, source="simulator:M")

    report = validate(settings, "raw")

    assert not report.passed
    failed = {o.expectation for o in report.critical_failures}
    assert failed == {
        "high_ge_low", "high_ge_open_close", "market_open", "bar_move_max",
    }  # fmt: skip
    assert offending(report, SUITE, "high_ge_low") == {high_low}
    assert offending(report, SUITE, "market_open") == {weekend}
    # the spike bar and the bar after it (the move back) both jump 20%
    assert spike in offending(report, SUITE, "bar_move_max")
    assert report.outcome(SUITE, "bar_move_max").unexpected_count == 2
    # the 20% spike is also flagged by the sigma warning
    assert spike in offending(report, SUITE, "bar_move_sigma")

    # every failing key is stored, once; a rerun adds nothing
    assert failure_keys(settings, SUITE, "high_ge_low") == {high_low}
    assert failure_keys(settings, SUITE, "market_open") == {weekend}
    assert spike in failure_keys(settings, SUITE, "bar_move_max")
    assert report.failures_written > 0
    again = validate(settings, "raw")
    assert again.failures_written == 0
    with open_warehouse(settings) as wh:
        dup = wh.query_df(
            "select count(*) as n from (select suite, expectation, pair, bar_time "
            "from quality.failures group by 1, 2, 3, 4 having count(*) > 1) q"
        )
    assert int(dup["n"][0]) == 0

    # the blocking call names suite, expectation and the offending row
    with pytest.raises(QualityGateError) as err:
        require_pass(settings, "raw")
    message = str(err.value)
    assert "raw_candles.high_ge_low" in message
    assert "EUR_USD 2024-01-04T10:00:00+00:00" in message
    assert "raw_candles.market_open" in message

    # an incremental run validates only the new range, after the corruptions
    assert validate(settings, "raw", since="2024-01-08").passed


def test_duplicated_minute_and_incomplete_candle_are_named(loaded):
    """A copy of the table without its key, with one minute loaded twice, and a
    candle stored 30 s after it started: it was still forming (complete = false);
    one stored exactly at its end was complete."""
    settings, _ = loaded
    dup = ("EUR_USD", T("2024-01-08 09:15", tz="UTC"))
    forming = ("USD_JPY", T("2024-01-08 10:42", tz="UTC"))
    ended = ("EUR_JPY", T("2024-01-08 10:43", tz="UTC"))
    with open_warehouse(settings) as wh:
        wh.execute("drop table if exists raw.candles_copy")
        wh.execute("create table raw.candles_copy as select * from raw.candles_m1")
        wh.execute(
            "insert into raw.candles_copy select * from raw.candles_m1 "
            f"where pair = '{dup[0]}' and bar_start = '{dup[1].isoformat()}'"
        )
        for (pair, at), after in ((forming, "30 seconds"), (ended, "1 minute")):
            wh.execute(
                "update raw.candles_copy set ingested_at = bar_start + "
                f"interval '{after}' where pair = '{pair}' "
                f"and bar_start = '{at.isoformat()}'"
            )
    report = validate(
        settings, "raw", since="2024-01-08", tables={SUITE: "raw.candles_copy"}
    )
    failed = {o.expectation for o in report.critical_failures}
    assert failed == {
        "unique_pair_bar_start", "timestamps_monotonic", "no_incomplete_candles",
    }  # fmt: skip
    assert offending(report, SUITE, "unique_pair_bar_start") == {dup}
    assert report.outcome(SUITE, "unique_pair_bar_start").examples[0]["copies"] == 2
    assert failure_keys(settings, SUITE, "unique_pair_bar_start") == {dup}
    assert offending(report, SUITE, "no_incomplete_candles") == {forming}
    assert failure_keys(settings, SUITE, "no_incomplete_candles") == {forming}


def test_nothing_to_validate_is_a_clear_error(duck_settings):
    with pytest.raises(GateError, match="raw.candles_m1 does not exist"):
        validate(duck_settings, "raw")
    with pytest.raises(GateError, match="unknown target 'bars'"):
        validate(duck_settings, "bars")
    with pytest.raises(GateError, match="bad --since value 'yesterday-ish'"):
        validate(duck_settings, "raw", since="yesterday-ish")


def test_postgres_password_stays_out_of_the_gx_project(pg_settings):
    """GX keeps its datasources in a yml: the password must not land there."""
    settings = pg_settings.model_copy(
        update={"pg_password": SecretStr("not-in-any-file-42")}
    )  # the test server trusts local connections, so any password works
    load_bars(settings)
    assert validate(settings, "raw", since="2024-01-08").passed
    project = settings.data_dir / "quality"
    texts = [p.read_text(errors="ignore") for p in project.rglob("*") if p.is_file()]
    assert any("${BQX_PG_PASSWORD}" in t for t in texts)
    assert not any("not-in-any-file-42" in t for t in texts)


def test_day_counts_and_flat_share_warn_with_the_right_rows(loaded):
    """Warnings name their rows; thresholds come from GateConfig."""
    settings, _ = loaded
    flat_from = T("2024-01-08 00:00", tz="UTC")
    with open_warehouse(settings) as wh:  # 6 h of flat EUR_USD bars: over 5%
        wh.execute(
            "update raw.candles_m1 set open = close, high = close, low = close "
            f"where pair = 'EUR_USD' and bar_start >= '{flat_from.isoformat()}' "
            "and bar_start < '2024-01-08 06:00:00+00:00'"
        )
    config = GateConfig(min_bars_per_day=1439)
    report = validate(settings, "raw", config=config)

    flat = report.outcome(SUITE, "flat_bar_share")
    assert not flat.success and flat.severity == "warning"
    assert [r["pair"] for r in flat.examples] == ["EUR_USD"]
    # independent count over the stored bars (earlier tests of the module may have
    # planted some, e.g. a Saturday bar): bars per pair per New York trading day
    # (17:00 rollover), first and last day of each pair excluded
    with open_warehouse(settings) as wh:
        stored = wh.query_df("select pair, bar_start from raw.candles_m1")
    ny = pd.to_datetime(stored["bar_start"], utc=True).dt.tz_convert("America/New_York")
    day = (ny + pd.Timedelta(hours=7)).dt.date
    counts = stored.groupby([stored["pair"], day]).size()
    inner = counts.groupby(level=0, group_keys=False).apply(lambda s: s.iloc[1:-1])
    short = {(p, d) for (p, d), n in inner.items() if n < 1439}
    named = report.outcome(SUITE, "bars_per_trading_day")
    assert named.unexpected_count == len(short) > 0
    stored = failure_keys(settings, SUITE, "bars_per_trading_day")
    assert len(stored) == len(short)
    assert not named.success and named.severity == "warning"
    assert {(r["pair"], r["day"]) for r in named.examples} <= short
