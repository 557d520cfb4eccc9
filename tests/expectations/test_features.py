"""The feature suites on marts built by real dbt, clean and corrupted."""

from __future__ import annotations

import pandas as pd
import pytest

from bqx.features import build
from bqx.warehouse import open_warehouse
from expectations import QualityGateError, build_data_docs, require_pass, validate
from tests.expectations.conftest import failure_keys, load_bars, offending

MARTS = (
    "features_bqx", "features_calendar", "features_corr", "features_idx",
    "features_reg", "features_strength", "features_tri", "features_volatility",
    "features_vwap", "labels_forward",
)  # fmt: skip
NAN_ROW = ("EUR_JPY", pd.Timestamp("2024-01-08 12:00", tz="UTC"))
CORR_ROW = ("EUR_USD", pd.Timestamp("2024-01-08 13:00", tz="UTC"))
NULL_ROW = ("USD_JPY", pd.Timestamp("2024-01-08 12:30", tz="UTC"))


@pytest.fixture(scope="module")
def built(module_settings):
    """Simulated bars loaded and every mart built by dbt, once per warehouse."""
    load_bars(module_settings)
    build(module_settings, command="run")  # dbt tests are tests/dbt's job
    return module_settings


def test_clean_marts_pass_and_data_docs_list_every_suite(built):
    report = validate(built, "features")
    assert report.suites == sorted(MARTS)
    assert [(o.suite, o.expectation) for o in report.outcomes if not o.success] == []
    # the range and warm-up rules really ran on these marts
    ran = {(o.suite, o.expectation) for o in report.outcomes}
    assert {
        ("features_corr", "corr_in_range"),
        ("features_reg", "reg_r2_in_range"),
        ("features_bqx", "nulls_only_in_warmup"),
        ("features_tri", "tri_err_mean_bound"),
        ("features_vwap", "no_nan_or_infinite"),
        ("features_vwap", "vwap_nulls_explained"),
        ("features_corr", "corr_nulls_explained"),
        ("features_strength", "csi_nulls_explained"),
        ("features_tri", "tri_nulls_explained"),
    } <= ran
    # the simulated bars have gaps: nulls where a partner has no bar are allowed
    with open_warehouse(built) as wh:
        gaps = wh.query_df(
            "select count(*) as n from marts.features_corr as m join "
            "intermediate.int_candles_numbered as i on i.pair = m.pair and "
            "i.bar_start_at = m.bar_start_at where m.pair = 'EUR_USD' "
            "and i.bar_n >= 390 and m.corr_base_base_60 is null"
        )
    assert int(gaps["n"][0]) > 0
    assert validate(built, "raw").passed

    index = build_data_docs(built)
    assert index == built.data_dir / "quality" / "data_docs" / "index.html"
    html = index.read_text()
    for suite in (*MARTS, "raw_candles"):
        assert suite in html, suite


# (suite, pair, bar start, column) of the planted nulls; each family's rule must
# name exactly its own rows. FULL are before SINCE, AFTER just after it (the old
# warm-up check counted rows from the start of the batch and missed those).
SINCE = pd.Timestamp("2024-01-05 12:00", tz="UTC")  # event time: bars from 11:59
FULL = [
    ("features_vwap", "EUR_USD", "2024-01-04 10:00", "vwap_90"),
    ("features_corr", "USD_JPY", "2024-01-04 10:30", "corr_quote_quote_240"),
    ("features_strength", "EUR_JPY", "2024-01-04 10:45", "csi_quote_60"),
    ("features_tri", "EUR_USD", "2024-01-04 11:15", "tri_err_mean"),
    ("features_tri", "USD_JPY", "2024-01-04 11:30", "tri_z_180"),
]
AFTER = [
    ("features_bqx", "EUR_USD", "2024-01-05 12:03", "bqx_45"),
    ("features_vwap", "USD_JPY", "2024-01-05 12:00", "vwap_dev_45"),
    ("features_corr", "EUR_JPY", "2024-01-05 12:02", "corr_base_base_60"),
    ("features_strength", "USD_JPY", "2024-01-05 12:01", "csi_spread_240"),
    ("features_tri", "EUR_JPY", "2024-01-05 12:04", "tri_z_180"),
]
RULES = {
    "features_bqx": "nulls_only_in_warmup",
    "features_vwap": "vwap_nulls_explained",
    "features_corr": "corr_nulls_explained",
    "features_strength": "csi_nulls_explained",
    "features_tri": "tri_nulls_explained",
}
ZERO_VOLUME = ("USD_JPY", "2024-01-04 11:00")  # 45 bars of volume 0 end here


def _named(report, planted) -> dict[str, set]:
    """Per suite, the (pair, time, column) the family's rule named."""
    out: dict[str, set] = {}
    for suite, rule in RULES.items():
        outcome = report.outcome(suite, rule)
        for row in outcome.examples:
            at = pd.Timestamp(row["bar_time"]).tz_convert("UTC")
            cols = row.get("null_columns") or row.get("null_column")
            for col in cols.split():
                out.setdefault(suite, set()).add((row["pair"], at, col))
    return out


def _expected(planted) -> dict[str, set]:
    out: dict[str, set] = {}
    for suite, pair, at, col in planted:
        out.setdefault(suite, set()).add((pair, pd.Timestamp(at, tz="UTC"), col))
    return out


def test_unexplained_nulls_fail_per_family_also_after_since(built):
    """Copies of five marts with nulls planted where the model never leaves one
    (a partner has a bar, the window is full, there is volume); a VWAP null over
    45 bars of zero volume is legitimate."""
    bars = "intermediate.int_candles_numbered"
    with open_warehouse(built) as wh:
        wh.execute("create schema if not exists scratch")
        for suite in RULES:
            wh.execute(f"drop table if exists scratch.{suite}")
            wh.execute(f"create table scratch.{suite} as select * from marts.{suite}")
        for suite, pair, at, col in FULL + AFTER:
            wh.execute(
                f"update scratch.{suite} set {col} = null where pair = '{pair}' "
                f"and bar_start_at = '{at}+00:00'"
            )
        pair, at = ZERO_VOLUME
        end = f"(select bar_n from {bars} where pair = '{pair}' and bar_start_at = '{at}+00:00')"
        wh.execute(
            f"update {bars} set volume = 0 where pair = '{pair}' "
            f"and bar_n between {end} - 44 and {end}"
        )
        wh.execute(
            "update scratch.features_vwap set vwap_45 = null, vwap_dev_45 = null "
            f"where pair = '{pair}' and bar_start_at = '{at}+00:00'"
        )
    tables = {suite: f"scratch.{suite}" for suite in RULES}
    try:
        report = validate(built, "features", tables=tables, suites=list(RULES))
        since = validate(
            built, "features", since=SINCE, tables=tables, suites=list(RULES)
        )
    finally:
        with open_warehouse(built) as wh:  # the volumes back, from the raw bars
            wh.execute(
                f"update {bars} set volume = r.volume from raw.candles_m1 as r "
                f"where r.pair = int_candles_numbered.pair "
                "and r.bar_start = int_candles_numbered.bar_start_at "
                f"and int_candles_numbered.pair = '{ZERO_VOLUME[0]}'"
            )

    failed = {(o.suite, o.expectation) for o in report.critical_failures}
    assert failed == set(RULES.items())
    assert _named(report, FULL + AFTER) == _expected(FULL + AFTER)
    assert failure_keys(built, "features_tri", "tri_nulls_explained") >= {
        ("EUR_USD", pd.Timestamp("2024-01-04 11:15", tz="UTC")),
        ("USD_JPY", pd.Timestamp("2024-01-04 11:30", tz="UTC")),
    }
    # only the new range: the nulls right after the boundary, none before it
    assert {(o.suite, o.expectation) for o in since.critical_failures} == set(
        RULES.items()
    )
    assert _named(since, AFTER) == _expected(AFTER)


def test_since_inside_the_warm_up_passes_on_clean_marts(built):
    """A range that starts inside every window's warm-up: its nulls are legitimate
    (bar_n counts the whole history, not the rows of the batch)."""
    suites = [*RULES, "features_volatility"]
    report = validate(built, "features", since="2024-01-03 00:10", suites=suites)
    assert report.passed, report.failure_message()
    assert not report.warnings


def _corr_column(settings) -> str:
    with open_warehouse(settings) as wh:
        cols = wh.query_df(
            "select column_name from information_schema.columns where "
            "table_schema = 'marts' and table_name = 'features_corr' "
            "and column_name like 'corr_%' order by column_name"
        )["column_name"]
    return str(cols.iloc[0])


def test_nan_late_null_and_impossible_correlation_fail_and_are_named(built):
    corr = _corr_column(built)
    with open_warehouse(built) as wh:
        wh.execute(
            "update marts.features_bqx set bqx_45 = cast('NaN' as double precision) "
            f"where pair = '{NAN_ROW[0]}' and bar_start_at = '{NAN_ROW[1].isoformat()}'"
        )
        wh.execute(
            f"update marts.features_corr set {corr} = 1.5 where {_corr_clause()}"
        )
        wh.execute(  # a null long after the warm-up of a 90-bar window
            "update marts.features_volatility set ret_std_90 = null where "
            + _key(NULL_ROW)
        )

    report = validate(built, "features")

    failed = {(o.suite, o.expectation) for o in report.critical_failures}
    assert failed == {
        ("features_bqx", "no_nan_or_infinite"),
        ("features_corr", "corr_in_range"),
        ("features_volatility", "nulls_only_in_warmup"),
    }
    late = report.outcome("features_volatility", "nulls_only_in_warmup")
    assert offending(report, "features_volatility", "nulls_only_in_warmup") == {
        NULL_ROW
    }
    assert late.examples[0]["null_column"] == "ret_std_90"
    assert offending(report, "features_bqx", "no_nan_or_infinite") == {NAN_ROW}
    nan = report.outcome("features_bqx", "no_nan_or_infinite").examples[0]
    assert nan["bad_columns"].split() == ["bqx_45"]
    assert offending(report, "features_corr", "corr_in_range") == {CORR_ROW}
    assert report.outcome("features_corr", "corr_in_range").examples[0][
        "bad_columns"
    ].split() == [corr]
    assert failure_keys(built, "features_corr", "corr_in_range") == {CORR_ROW}
    assert failure_keys(built, "features_bqx", "no_nan_or_infinite") == {NAN_ROW}

    with pytest.raises(QualityGateError) as err:
        require_pass(built, "features")
    message = str(err.value)
    assert "features_corr.corr_in_range" in message
    assert f"{CORR_ROW[0]} {CORR_ROW[1].isoformat()}" in message
    assert "features_bqx.no_nan_or_infinite" in message

    # validating only rows after the corruption passes
    assert validate(built, "features", since="2024-01-08 14:01").passed


def test_publish_is_refused_and_the_online_store_is_unchanged(built):
    """bqx.features.publish runs the gate first (full history on a full publish),
    on the local deployment (SQLite) and on production (Redis)."""
    from bqx.features import online_values, publish

    if built.deployment == "production":
        import redis

        redis.Redis(port=6379, db=built.redis_db).flushdb()

    with open_warehouse(built) as wh:  # undo the corruption of the test above
        wh.execute("delete from marts.features_corr where " + _corr_clause())
        wh.execute("delete from marts.features_volatility where " + _key(NULL_ROW))
        wh.execute(
            "delete from marts.features_bqx where bqx_45 = "
            "cast('NaN' as double precision)"
        )
    publish(built)  # the first publish validates every row: clean, it passes
    before = online_values(built, ["EUR_USD", "USD_JPY", "EUR_JPY"])
    with open_warehouse(built) as wh:
        wh.execute(
            "update marts.features_bqx set bqx_45 = cast('NaN' as double precision) "
            "where bar_start_at = (select max(bar_start_at) from marts.features_bqx)"
        )
    with pytest.raises(QualityGateError, match="features_bqx.no_nan_or_infinite"):
        publish(built, full=True)
    after = online_values(built, ["EUR_USD", "USD_JPY", "EUR_JPY"])
    assert before["bqx_45"].notna().all()
    pd.testing.assert_frame_equal(
        before.drop(columns="age_minutes"), after.drop(columns="age_minutes")
    )


def _key(row: tuple[str, pd.Timestamp]) -> str:
    return f"pair = '{row[0]}' and bar_start_at = '{row[1].isoformat()}'"


def _corr_clause() -> str:
    return _key(CORR_ROW)
