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

import re
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
        ingest_clock_skew_seconds: slack of the stored-before-complete rule (a
            candle ingested before ``bar_start + 1 minute - skew`` cannot have been
            complete); 0 trusts the ingesting host's clock.
        lookback_bars: own bars of each pair read before ``--since`` by the rules
            that need history (window sums, common timestamps, earlier values);
            at least the longest window of the contract (2880).
    """

    closed_tolerance_minutes: int = 5
    min_bars_per_day: int = 1000
    max_flat_share: float = 0.05
    max_zero_volume_share: float = 0.5
    sigma_flag: float = 15.0
    max_bar_move_pct: float = 10.0
    tri_err_bound_bp: float = 50.0
    tolerance: float = 1e-9
    ingest_clock_skew_seconds: int = 0
    lookback_bars: int = 2880


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
    skew = int(cfg.ingest_clock_skew_seconds)
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
            # raw.candles_m1 has no `complete` column: ingestion stores complete
            # candles only. A candle stored before its minute ended cannot have
            # been complete (ingested_at is the database's now() of the load).
            "no_incomplete_candles",
            "critical",
            "no complete = false candle stored: none ingested before its minute "
            f"ended (ingested_at >= bar_start + 1 minute - {skew} s)",
            "select pair, bar_start as bar_time, ingested_at from {batch} "
            "where ingested_at < bar_start + interval '1 minute' "
            f"- interval '{skew} seconds'",
            ("ingested_at",),
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


BARS_MODEL = "intermediate.int_candles_numbered"
CORR_CATEGORIES = ("base_base", "quote_quote", "base_quote", "quote_base")


@dataclass(frozen=True)
class Scope:
    """What the null rules of a mart read besides ``{batch}``.

    Attributes:
        table: the mart's relation (``{batch}`` is its rows of the range).
        bars: the numbered bars the marts are built from (dbt model
            ``int_candles_numbered``: ``bar_n`` counts each pair's bars from 0,
            ``log_return``, ``volume``).
        bar_since: SQL timestamp of the batch's first bar start (``--since``), or
            None for every row. Rules that need history read ``lookback_bars``
            more bars of each pair before it.
    """

    table: str
    bars: str = BARS_MODEL
    bar_since: str | None = None


def _bars_cte(scope: Scope, columns: str, lookback: int, cross: bool) -> str:
    """The CTE ``bars``: ``columns`` of the numbered bars the rule needs.

    Every bar without ``--since``; else each pair's bars from ``lookback`` bars
    before its first bar in the range (``cross``: one time range for all pairs,
    from the earliest such bar, as the cross-pair marts read them).
    """
    src, since = scope.bars, scope.bar_since
    if since is None:
        return f"bars as (select {columns} from {src})"
    first = (
        f"first_in as (select pair, min(bar_n) as n0 from {src} "
        f"where bar_start_at >= {since} group by pair)"
    )
    if not cross:
        prefixed = ", ".join(f"i.{c.strip()}" for c in columns.split(","))
        return (
            f"{first}, bars as (select {prefixed} from {src} as i "
            f"join first_in as f on i.pair = f.pair and i.bar_n >= f.n0 - {lookback})"
        )
    return (
        f"{first}, lower_time as (select min(i.bar_start_at) as t_lb from {src} as i "
        "join first_in as f on i.pair = f.pair "
        f"and i.bar_n = greatest(f.n0 - {lookback}, 0)), "
        f"bars as (select {columns} from {src} "
        "where bar_start_at >= (select t_lb from lower_time))"
    )


def _violations(
    scope_sql: str, joined: str, conditions: dict[str, str], values: str = ""
) -> str:
    """``select`` of the batch rows (``m``) where a column's null is unexplained.

    ``conditions`` maps each column to the SQL that holds when its null breaks the
    rule; ``null_columns`` lists the columns that do on the row.
    """
    names = " || ".join(
        f"case when {cond} then '{c} ' else '' end" for c, cond in conditions.items()
    )
    return (
        f"with {scope_sql} select m.pair, m.bar_start_at as bar_time{values}, "
        f"{names} as null_columns from {{batch}} as m {joined} where "
        + " or ".join(f"({cond})" for cond in conditions.values())
    )


def null_rules(features: list[str], cfg: GateConfig, scope: Scope) -> list[Rule]:
    """The null rules of the contract for a mart's feature columns.

    A feature may be null only in its pair's warm-up rows, where a required
    partner pair has no bar at that timestamp, and where the source lacks the
    family's input (VWAP with no volume in the window): each family's rule says
    exactly when its dbt model leaves a value null, and names every other null.
    Warm-up is counted in ``bar_n`` of the numbered bars (the whole history), so
    it is exact with ``--since`` too.
    """
    rules = []
    warm = {c: warmup_rows(c) for c in features}
    warm = {c: n for c, n in warm.items() if n is not None}
    if warm:
        # a row breaks the rule when bar_n >= the smallest warm-up of its null
        # columns; the join carries only the keys, bar_n and that one number
        by_warmup = sorted(warm.items(), key=lambda item: item[1])
        min_w = " ".join(f"when m.{c} is null then {n}" for c, n in by_warmup)
        first = " ".join(f"when m.{c} is null then '{c}'" for c, _ in by_warmup)
        since = f" and i.bar_start_at >= {scope.bar_since}" if scope.bar_since else ""
        rules.append(
            Rule(
                "nulls_only_in_warmup",
                "critical",
                "windowed features are null only in each pair's warm-up rows "
                "(bar_n counted over the pair's whole history)",
                "with b as (select m.pair, m.bar_start_at, i.bar_n, "
                f"case {min_w} end as min_warmup, case {first} end as null_column "
                f"from {{batch}} as m join {scope.bars} as i "
                f"on i.pair = m.pair and i.bar_start_at = m.bar_start_at{since}) "
                "select pair, bar_start_at as bar_time, bar_n, null_column from b "
                "where bar_n >= min_warmup",
                ("bar_n", "null_column"),
            )
        )
    for make in (_vwap_rule, _corr_rule, _strength_rule, _tri_rule):
        rule = make(features, cfg, scope)
        if rule is not None:
            rules.append(rule)
    return rules


def _windowed(features: list[str], pattern: str) -> dict[str, tuple[str, int]]:
    """``{column: (group, w)}`` for the columns matching ``pattern``
    (groups: a name, then the window)."""
    out = {}
    for c in features:
        match = re.fullmatch(pattern, c)
        if match:
            out[c] = (match.group(1), int(match.group(2)))
    return out


def _return_bars(scope: Scope, cfg: GateConfig, windows: list[int]) -> str:
    """The ``bars`` CTE of the cross-pair rules: every pair's returns, read back
    far enough for the largest window (and the gate's lookback)."""
    return _bars_cte(
        scope,
        "pair, bar_start_at, log_return",
        max(cfg.lookback_bars, *windows),
        cross=True,
    )


def _vwap_rule(features: list[str], cfg: GateConfig, scope: Scope) -> Rule | None:
    cols = _windowed(features, r"(vwap|vwap_dev)_(\d+)")
    if not cols:
        return None
    windows = sorted({w for _, w in cols.values()})
    sums = ", ".join(
        f"sum(volume) over (partition by pair order by bar_n rows between "
        f"{w - 1} preceding and current row) as v_{w}"
        for w in windows
    )
    bars = _bars_cte(
        scope, "pair, bar_n, bar_start_at, volume", max(windows) - 1, cross=False
    )
    conditions = {
        c: f"m.{c} is null and s.bar_n >= {w - 1} and s.v_{w} > 0"
        for c, (_, w) in cols.items()
    }
    return Rule(
        "vwap_nulls_explained",
        "critical",
        "vwap and vwap_dev are null only in warm-up rows (bar_n < w - 1) or where "
        "the window's volume sum is 0",
        _violations(
            f"{bars}, s as (select pair, bar_start_at, bar_n, {sums} from bars)",
            "join s on s.pair = m.pair and s.bar_start_at = m.bar_start_at",
            conditions,
            ", s.bar_n",
        ),
        ("bar_n", "null_columns"),
    )


def _category_sql(p: str, o: str) -> str:
    """SQL for the category of pair ``o`` seen from pair ``p`` (dbt bqx_relation)."""
    return (
        f"case when {o}.b = {p}.b and {o}.q <> {p}.q then 'base_base' "
        f"when {o}.q = {p}.q and {o}.b <> {p}.b then 'quote_quote' "
        f"when {o}.q = {p}.b then 'base_quote' "
        f"when {o}.b = {p}.q then 'quote_base' end"
    )


_PAIRS_CTE = (
    "pairs as (select distinct pair, split_part(pair, '_', 1) as b, "
    "split_part(pair, '_', 2) as q from bars)"
)


def _corr_rule(features: list[str], cfg: GateConfig, scope: Scope) -> Rule | None:
    """corr_{c}_{w} (P, t) is null iff no partner O of category c has, at t, a
    return of both pairs, w common timestamps with returns up to t, and
    non-constant returns of both over the last w of them (Pearson's variance).
    Each link's returns are aligned on common timestamps once; a window is
    constant when the running count of changes between consecutive returns
    did not move in it."""
    cats = "|".join(CORR_CATEGORIES)
    cols = _windowed(features, rf"corr_({cats})_(\d+)")
    if not cols:
        return None
    windows = sorted({w for _, w in cols.values()})
    bars = _return_bars(scope, cfg, windows)
    link = "partition by link_id order by bar_start_at"
    usable = ", ".join(
        f"(k >= {w} and cdx - lag(cdx, {w - 1}) over wl > 0 "
        f"and cdy - lag(cdy, {w - 1}) over wl > 0) as ok_{w}"
        for w in windows
    )
    needs = ", ".join(
        f"max(case when category = '{cat}' and ok_{w} then 1 else 0 end) "
        f"as need_{cat}_{w}"
        for cat, w in sorted(set(cols.values()))
    )
    # only link rows where the pair has a null in that category are grouped
    null_in = " or ".join(
        f"(a.category = '{cat}' and ("
        + " or ".join(f"m.{c} is null" for c, (k, _) in cols.items() if k == cat)
        + "))"
        for cat in sorted({cat for cat, _ in cols.values()})
    )
    oks = ", ".join(f"u.ok_{w}" for w in windows)
    cumulative = f"{link} rows between unbounded preceding and current row"
    ctes = (
        f"{bars}, {_PAIRS_CTE}, "
        "links as (select row_number() over (order by pair_p, pair_o) as link_id, "
        "l.* from (select p.pair as pair_p, o.pair as pair_o, "
        f"{_category_sql('p', 'o')} as cat_p, {_category_sql('o', 'p')} as cat_o "
        "from pairs as p, pairs as o where p.pair < o.pair) as l "
        "where cat_p is not null), "
        "returns as (select pair, bar_start_at, log_return as r from bars "
        "where log_return is not null), "
        "aligned as (select l.link_id, rp.bar_start_at, rp.r as x, ro.r as y "
        "from links as l join returns as rp on rp.pair = l.pair_p "
        "join returns as ro on ro.pair = l.pair_o "
        "and ro.bar_start_at = rp.bar_start_at), "
        "changes as (select link_id, bar_start_at, row_number() over wl as k, "
        "case when x <> lag(x) over wl then 1 else 0 end as dx, "
        "case when y <> lag(y) over wl then 1 else 0 end as dy "
        f"from aligned window wl as ({link})), "
        f"counted as (select link_id, bar_start_at, k, sum(dx) over ({cumulative}) "
        f"as cdx, sum(dy) over ({cumulative}) as cdy from changes), "
        f"usable as (select link_id, bar_start_at, {usable} "
        f"from counted window wl as ({link})), "
        "attributed as (select l.pair_p as pair, l.cat_p as category, "
        f"u.bar_start_at, {oks} from usable as u join links as l "
        "on l.link_id = u.link_id union all select l.pair_o, l.cat_o, "
        f"u.bar_start_at, {oks} from usable as u join links as l "
        "on l.link_id = u.link_id), "
        "relevant as (select a.* from attributed as a join {batch} as m "
        f"on m.pair = a.pair and m.bar_start_at = a.bar_start_at where {null_in}), "
        f"needed as (select pair, bar_start_at, {needs} from relevant "
        "group by pair, bar_start_at)"
    )
    conditions = {
        c: f"m.{c} is null and n.need_{cat}_{w} = 1" for c, (cat, w) in cols.items()
    }
    return Rule(
        "corr_nulls_explained",
        "critical",
        "corr_{category}_{w} is null only where no pair of the category has a bar "
        "at that timestamp with w earlier common bars (warm-up) and non-constant "
        "returns",
        _violations(
            ctes,
            "join needed as n on n.pair = m.pair and n.bar_start_at = m.bar_start_at",
            conditions,
        ),
        ("null_columns",),
    )


def _strength_rule(features: list[str], cfg: GateConfig, scope: Scope) -> Rule | None:
    """csi_{side}_{w} (P, t) is null iff the currency's strength series (the
    timestamps where some pair holding it has a return) has no value at t or
    fewer than w values up to t; partner pairs without a bar are skipped."""
    cols = _windowed(features, r"csi_(base|quote|spread)_(\d+)")
    if not cols:
        return None
    windows = sorted({w for _, w in cols.values()})
    bars = _return_bars(scope, cfg, windows)
    ctes = (
        f"{bars}, "
        "ccy as (select split_part(pair, '_', 1) as currency, bar_start_at from bars "
        "where log_return is not null union select split_part(pair, '_', 2), "
        "bar_start_at from bars where log_return is not null), "
        "series as (select currency, bar_start_at, row_number() over "
        "(partition by currency order by bar_start_at) as k from ccy)"
    )
    conditions = {}
    for c, (side, w) in cols.items():
        base, quote = f"coalesce(sb.k, 0) >= {w}", f"coalesce(sq.k, 0) >= {w}"
        need = {"base": base, "quote": quote, "spread": f"{base} and {quote}"}[side]
        conditions[c] = f"m.{c} is null and {need}"
    return Rule(
        "csi_nulls_explained",
        "critical",
        "csi is null only where the currency's strength series has fewer than w "
        "values up to the bar (warm-up) or none at its timestamp",
        _violations(
            ctes,
            "left join series as sb on sb.currency = split_part(m.pair, '_', 1) "
            "and sb.bar_start_at = m.bar_start_at "
            "left join series as sq on sq.currency = split_part(m.pair, '_', 2) "
            "and sq.bar_start_at = m.bar_start_at",
            conditions,
        ),
        ("null_columns",),
    )


def _tri_rule(features: list[str], cfg: GateConfig, scope: Scope) -> Rule | None:
    """tri_err_mean/absmax (P, t) are null iff no third currency has both legs
    with a bar at t; tri_z_{w} also when fewer than w earlier tri_err_mean values
    exist or those w are all equal (std 0)."""
    errs = [c for c in ("tri_err_mean", "tri_err_absmax") if c in features]
    zs = {c: w for c, (_, w) in _windowed(features, r"(tri_z)_(\d+)").items()}
    if not errs and not zs:
        return None
    lookback = max(cfg.lookback_bars, *zs.values()) if zs else cfg.lookback_bars
    bars = _bars_cte(scope, "pair, bar_start_at", lookback, cross=True)
    third1 = "case when l1.b = p.b then l1.q else l1.b end"
    third2 = "case when l2.b = p.q then l2.q else l2.b end"
    ctes = (
        f"{bars}, {_PAIRS_CTE}, "
        "triangles as (select distinct p.pair, l1.pair as leg1, l2.pair as leg2 "
        "from pairs as p, pairs as l1, pairs as l2 "
        "where l1.pair <> p.pair and l2.pair <> p.pair "
        "and (l1.b = p.b or l1.q = p.b) and (l2.b = p.q or l2.q = p.q) "
        f"and {third1} = {third2} and {third1} <> p.q and {third2} <> p.b), "
        "tri_at as (select distinct t.pair, b1.bar_start_at from triangles as t "
        "join bars as b1 on b1.pair = t.leg1 "
        "join bars as b2 on b2.pair = t.leg2 and b2.bar_start_at = b1.bar_start_at)"
    )
    joined = (
        "left join tri_at as ta on ta.pair = m.pair "
        "and ta.bar_start_at = m.bar_start_at"
    )
    conditions = {c: f"m.{c} is null and ta.pair is not null" for c in errs}
    if zs:
        # the mart's own earlier tri_err_mean values (the batch is only the range)
        since = (
            " and bar_start_at >= (select min(bar_start_at) from bars)"
            if scope.bar_since
            else ""
        )
        part = "partition by pair order by bar_start_at"
        needs = ", ".join(
            f"(j > {w} and lag(cd, 1) over wz - lag(cd, {w}) over wz > 0) as need_{w}"
            for w in sorted(set(zs.values()))
        )
        ctes += (
            ", z_values as (select pair, bar_start_at, row_number() over wz as j, "
            "case when tri_err_mean <> lag(tri_err_mean) over wz then 1 else 0 end "
            f"as d from {scope.table} where tri_err_mean is not null{since} "
            f"window wz as ({part})), "
            "z_counted as (select pair, bar_start_at, j, sum(d) over "
            f"({part} rows between unbounded preceding and current row) as cd "
            "from z_values), "
            f"z_needed as (select pair, bar_start_at, {needs} from z_counted "
            f"window wz as ({part}))"
        )
        joined += (
            " left join z_needed as z on z.pair = m.pair "
            "and z.bar_start_at = m.bar_start_at"
        )
        for c, w in zs.items():
            conditions[c] = f"m.{c} is null and z.need_{w}"
    return Rule(
        "tri_nulls_explained",
        "critical",
        "tri_err is null only where no triangle has both legs' bars at that "
        "timestamp; tri_z also with fewer than its window of earlier tri_err_mean "
        "values (warm-up) or all of them equal",
        _violations(ctes, joined, conditions),
        ("null_columns",),
    )


def feature_rules(
    mart: str,
    columns: dict[str, str],
    cfg: GateConfig,
    scope: Scope | None = None,
) -> list[Rule]:
    """The rules of one mart's suite, from its columns (name -> SQL type).

    ``scope`` says where the null rules read the bars the mart was built from and
    which range the batch covers (default: ``marts.<mart>``, every row).
    """
    scope = scope or Scope(table=f"marts.{mart}")
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
    if not mart.startswith("labels"):
        rules += null_rules(features, cfg, scope)
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
