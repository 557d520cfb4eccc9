"""Quality rules as SQL over a GX batch, and the thresholds they use.

A :class:`Rule` is one Great Expectations ``UnexpectedRowsExpectation``: a query over
``{batch}`` that returns the offending rows (none when the rule holds). Queries never
say ``join`` (GX then leaves ``{batch}`` without an alias, which PostgreSQL
rejects). Every query returns ``pair``, ``bar_time`` (the bar time, or the start
of the offending period) and the rule's value columns, so a failure names its rows
the same way for every rule and their keys can be written to ``quality.failures``.

The SQL is the common subset of DuckDB and PostgreSQL (``at time zone``,
``stddev_samp``, window functions, ``cast(... as double precision)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Severity = Literal["critical", "warning"]


@dataclass(frozen=True)
class GateConfig:
    """Thresholds of the quality rules (defaults from docs/features.md).

    Attributes:
        closed_tolerance_minutes: minutes a bar may sit inside the weekly close
            (Friday 17:00 to Sunday 17:00 America/New_York) at either edge.
        min_bars_per_day: fewest bars a pair may have on a full trading day
            (17:00 New York rollover; the first and last day of a batch are partial
            and not checked). A full day has 1440.
        max_flat_share: largest share of flat bars (o = h = l = c) per pair.
        max_zero_volume_share: largest share of zero-volume bars per pair.
        sigma_flag: one-bar log moves above this many standard deviations of the
            pair's moves in the batch are flagged (warning).
        max_bar_move_pct: one-bar close-to-close moves above this (percent) are
            impossible for a major pair in one minute: critical.
        tri_err_bound_bp: ``|tri_err_mean|`` above this (basis points) flags the bar.
        tolerance: slack of the [-1, 1] and [0, 1] bounds of ``corr`` and ``reg_r2``.
    """

    closed_tolerance_minutes: int = 5
    min_bars_per_day: int = 1000
    max_flat_share: float = 0.05
    max_zero_volume_share: float = 0.5
    sigma_flag: float = 15.0
    max_bar_move_pct: float = 10.0
    tri_err_bound_bp: float = 50.0
    tolerance: float = 1e-9


@dataclass(frozen=True)
class Rule:
    """One expectation: SQL returning offending rows (``pair``, ``at``, values).

    Attributes:
        name: the expectation id, unique within its suite (snake case).
        severity: ``critical`` blocks publication; ``warning`` is reported only.
        description: the rule in words (shown in reports and Data Docs).
        sql: the query; ``{batch}`` stands for the rows being validated.
        values: the value columns the query returns besides ``pair`` and ``bar_time``.
    """

    name: str
    severity: Severity
    description: str
    sql: str
    values: tuple[str, ...] = field(default_factory=tuple)


DOUBLE = "double precision"
NY = "'America/New_York'"


def _f(column: str) -> str:
    return f"cast({column} as {DOUBLE})"


def raw_rules(cfg: GateConfig) -> list[Rule]:
    """The rules of the ``raw_candles`` suite (table ``raw.candles_m1``)."""
    tol = cfg.closed_tolerance_minutes
    ordered = (
        "with b as (select pair, bar_start, open, high, low, close, volume, "
        "lag(bar_start) over (partition by pair order by bar_start) as prev_start, "
        "lag(close) over (partition by pair order by bar_start) as prev_close "
        "from {batch})"
    )
    local = f"(bar_start at time zone {NY})"
    minute_of_day = f"(extract(hour from {local}) * 60 + extract(minute from {local}))"
    dow = f"extract(dow from {local})"
    trading_day = f"cast({local} + interval '7 hours' as date)"
    moves = (
        "with m as (select pair, bar_start, prev_close, close, "
        f"ln({_f('close')} / {_f('prev_close')}) as r from ("
        "select pair, bar_start, close, "
        "lag(close) over (partition by pair order by bar_start) as prev_close "
        "from {batch}) q where prev_close > 0 and close > 0)"
    )
    return [
        Rule(
            "prices_positive",
            "critical",
            "open, high, low and close are present and > 0",
            "select pair, bar_start as bar_time, open, high, low, close from {batch} "
            "where not (open > 0 and high > 0 and low > 0 and close > 0) "
            "or open is null or high is null or low is null or close is null",
            ("open", "high", "low", "close"),
        ),
        Rule(
            "high_ge_low",
            "critical",
            "high >= low",
            "select pair, bar_start as bar_time, high, low from {batch} "
            "where high < low",
            ("high", "low"),
        ),
        Rule(
            "low_le_open_close",
            "critical",
            "low <= min(open, close)",
            "select pair, bar_start as bar_time, open, low, close from {batch} "
            "where low > least(open, close)",
            ("open", "low", "close"),
        ),
        Rule(
            "high_ge_open_close",
            "critical",
            "high >= max(open, close)",
            "select pair, bar_start as bar_time, open, high, close from {batch} "
            "where high < greatest(open, close)",
            ("open", "high", "close"),
        ),
        Rule(
            "volume_non_negative",
            "critical",
            "volume >= 0",
            "select pair, bar_start as bar_time, volume from {batch} "
            "where volume < 0 or volume is null",
            ("volume",),
        ),
        Rule(
            "unique_pair_bar_start",
            "critical",
            "one row per (pair, bar_start)",
            "select pair, bar_start as bar_time, count(*) as copies from {batch} "
            "group by pair, bar_start having count(*) > 1",
            ("copies",),
        ),
        Rule(
            "timestamps_monotonic",
            "critical",
            "per pair, each bar starts strictly after the one before it",
            ordered + " select pair, bar_start as bar_time, prev_start from b "
            "where prev_start >= bar_start",
            ("prev_start",),
        ),
        Rule(
            "bar_start_whole_minute",
            "critical",
            "bar_start is on a whole minute",
            "select pair, bar_start as bar_time from {batch} "
            "where date_trunc('minute', bar_start) <> bar_start",
        ),
        Rule(
            "market_open",
            "critical",
            "no bar while the market is closed, Friday 17:00 to Sunday 17:00 "
            f"America/New_York (tolerance {tol} min)",
            f"select pair, bar_start as bar_time, {dow} as ny_dow, "
            f"{minute_of_day} as ny_minute from {{batch}} "
            f"where ({dow} = 5 and {minute_of_day} >= {17 * 60 + tol}) "
            f"or {dow} = 6 or ({dow} = 0 and {minute_of_day} < {17 * 60 - tol})",
            ("ny_dow", "ny_minute"),
        ),
        Rule(
            "bar_move_max",
            "critical",
            f"one-bar close-to-close move at most {cfg.max_bar_move_pct:g}%",
            moves + " select pair, bar_start as bar_time, prev_close, close from m "
            f"where abs(exp(r) - 1) * 100 > {cfg.max_bar_move_pct}",
            ("prev_close", "close"),
        ),
        Rule(
            "bar_move_sigma",
            "warning",
            f"one-bar log moves above {cfg.sigma_flag:g} sigma of the pair's moves "
            "are flagged",
            moves + ", s as (select pair, bar_start, prev_close, close, r, "
            "stddev_samp(r) over (partition by pair) as sd from m) "
            "select pair, bar_start as bar_time, prev_close, close, "
            "round(cast(abs(r) / sd as numeric), 1) as sigmas from s "
            f"where sd > 0 and abs(r) > {cfg.sigma_flag} * sd",
            ("prev_close", "close", "sigmas"),
        ),
        Rule(
            "bars_per_trading_day",
            "warning",
            f"between {cfg.min_bars_per_day} and 1440 bars per pair per full trading "
            "day (17:00 New York rollover; first and last day of the batch skipped)",
            "with d as (select pair, day, min(bar_start) as bar_time, "
            "count(*) as bars from (select pair, bar_start, "
            f"{trading_day} as day from {{batch}}) q group by pair, day), "
            "e as (select pair, bar_time, day, bars, "
            "min(day) over (partition by pair) as first_day, "
            "max(day) over (partition by pair) as last_day from d) "
            "select pair, bar_time, day, bars from e "
            "where day > first_day and day < last_day "
            f"and (bars < {cfg.min_bars_per_day} or bars > 1440)",
            ("day", "bars"),
        ),
        Rule(
            "flat_bar_share",
            "warning",
            f"share of flat bars (o = h = l = c) per pair at most {cfg.max_flat_share}",
            "select pair, min(bar_start) as bar_time, "
            "round(cast(avg(case when open = high and high = low and low = close "
            "then 1.0 else 0.0 end) as numeric), 4) as flat_share "
            "from {batch} group by pair having avg(case when open = high and "
            "high = low and low = close then 1.0 else 0.0 end) "
            f"> {cfg.max_flat_share}",
            ("flat_share",),
        ),
        Rule(
            "zero_volume_share",
            "warning",
            "share of zero-volume bars per pair at most "
            f"{cfg.max_zero_volume_share} (VWAP needs volume)",
            "select pair, min(bar_start) as bar_time, "
            "round(cast(avg(case when volume = 0 then 1.0 else 0.0 end) "
            "as numeric), 4) as zero_share from {batch} "
            "group by pair having avg(case when volume = 0 then 1.0 else 0.0 end) "
            f"> {cfg.max_zero_volume_share}",
            ("zero_share",),
        ),
    ]


_BAD_FLOATS = ", ".join(
    f"cast('{v}' as {DOUBLE})" for v in ("NaN", "Infinity", "-Infinity")
)
_FLOAT_TYPES = ("double", "float", "real", "numeric", "decimal")


def is_float_type(data_type: str) -> bool:
    """Whether a column type (DuckDB or PostgreSQL spelling) can hold NaN."""
    return data_type.lower().startswith(_FLOAT_TYPES)


def warmup_rows(column: str) -> int | None:
    """Rows at the start of a pair that may be null for a feature column.

    ``None`` when the column may be null for reasons other than warm-up (partner
    bars, volume, the end of the data) and so has no warm-up rule. Windows come from
    the column suffix (``bqx_45``): ``bqx`` and ``ret_std`` need ``w`` earlier bars,
    ``range`` and ``reg`` start at ``n = w - 1`` (docs/features.md).
    """
    if column in ("close_idx", "open_idx", "high_idx", "low_idx"):
        return 0
    if column in ("minutes_since_open", "is_weekend_approach"):
        return 0
    if column == "gap_minutes":
        return 1
    head, _, tail = column.rpartition("_")
    if not tail.isdigit():
        return None
    w = int(tail)
    if head in ("bqx", "ret_std"):
        return w
    if head == "range" or head.startswith("reg_"):
        return w - 1
    return None


def _names_where(columns: list[str], predicate: str) -> str:
    """SQL text listing the columns for which ``predicate`` (``{c}``) holds."""
    parts = [
        f"case when {predicate.format(c=c)} then '{c} ' else '' end" for c in columns
    ]
    return " || ".join(parts)


def feature_rules(mart: str, columns: dict[str, str], cfg: GateConfig) -> list[Rule]:
    """The rules of one mart's suite, from its columns (name -> SQL type)."""
    keys = ("pair", "bar_start_at", "event_timestamp")
    features = [c for c in columns if c not in keys]
    floats = [c for c in features if is_float_type(columns[c])]
    rules = [
        Rule(
            "unique_pair_bar_start_at",
            "critical",
            "one row per (pair, bar_start_at)",
            "select pair, bar_start_at as bar_time, count(*) as copies from {batch} "
            "group by pair, bar_start_at having count(*) > 1",
            ("copies",),
        ),
        Rule(
            "event_timestamp_is_bar_end",
            "critical",
            "event_timestamp = bar_start_at + 1 minute (the bar end)",
            "select pair, bar_start_at as bar_time, event_timestamp from {batch} "
            "where event_timestamp is null or bar_start_at is null "
            "or event_timestamp <> bar_start_at + interval '1 minute'",
            ("event_timestamp",),
        ),
    ]  # unique keys + event = bar + 1 min imply strictly increasing event times
    if floats:
        bad = f"cast({{c}} as {DOUBLE}) in ({_BAD_FLOATS})"
        rules.append(
            Rule(
                "no_nan_or_infinite",
                "critical",
                "no NaN or infinite value in any feature column",
                f"select pair, bar_start_at as bar_time, {_names_where(floats, bad)} "
                "as bad_columns from {batch} where "
                + " or ".join(bad.format(c=c) for c in floats),
                ("bad_columns",),
            )
        )
    warm = {c: warmup_rows(c) for c in features}
    warm = {c: n for c, n in warm.items() if n is not None}
    if warm and not mart.startswith("labels"):
        # a row breaks the rule when n >= the smallest warm-up of its null
        # columns; the window sort carries only the keys and that one number
        by_warmup = sorted(warm.items(), key=lambda item: item[1])
        min_w = " ".join(f"when {c} is null then {n}" for c, n in by_warmup)
        first = " ".join(f"when {c} is null then '{c}'" for c, _ in by_warmup)
        rules.append(
            Rule(
                "nulls_only_in_warmup",
                "critical",
                "windowed features are null only in each pair's warm-up rows "
                "(checked on rows with enough earlier rows in the batch)",
                "with b as (select pair, bar_start_at, "
                f"case {min_w} end as min_warmup, case {first} end as null_column, "
                "row_number() over (partition by pair order by bar_start_at) - 1 "
                "as n from {batch}) "
                "select pair, bar_start_at as bar_time, n as row_in_batch, "
                "null_column from b where n >= min_warmup",
                ("row_in_batch", "null_column"),
            )
        )
    corr = [c for c in features if c.startswith("corr_")]
    if corr:
        lo, hi = -1 - cfg.tolerance, 1 + cfg.tolerance
        out = f"({{c}} < {lo} or {{c}} > {hi})"
        rules.append(
            Rule(
                "corr_in_range",
                "critical",
                "correlations in [-1, 1]",
                f"select pair, bar_start_at as bar_time, {_names_where(corr, out)} "
                "as bad_columns from {batch} where "
                + " or ".join(out.format(c=c) for c in corr),
                ("bad_columns",),
            )
        )
    r2 = [c for c in features if c.startswith("reg_r2_")]
    if r2:
        lo, hi = -cfg.tolerance, 1 + cfg.tolerance
        out = f"({{c}} < {lo} or {{c}} > {hi})"
        rules.append(
            Rule(
                "reg_r2_in_range",
                "critical",
                f"reg_r2 in [0, 1] up to {cfg.tolerance:g}",
                f"select pair, bar_start_at as bar_time, {_names_where(r2, out)} "
                "as bad_columns from {batch} where "
                + " or ".join(out.format(c=c) for c in r2),
                ("bad_columns",),
            )
        )
    if "tri_err_mean" in features:
        rules.append(
            Rule(
                "tri_err_mean_bound",
                "warning",
                f"|tri_err_mean| at most {cfg.tri_err_bound_bp:g} bp (else flagged)",
                "select pair, bar_start_at as bar_time, tri_err_mean from {batch} "
                f"where abs(tri_err_mean) > {cfg.tri_err_bound_bp}",
                ("tri_err_mean",),
            )
        )
    return rules
