{#- The configured universe as a relation (one row per pair). -#}
{% macro bqx_universe_relation() -%}
(values {% for p in bqx_pairs() %}('{{ p }}'){{ ", " if not loop.last }}{% endfor %}) as universe (pair)
{%- endmacro %}

{#- A timestamptz literal from a value read back with run_query. -#}
{% macro bqx_ts_literal(value) -%}
cast('{{ value }}' as timestamp with time zone)
{%- endmacro %}

{#- int_candles_numbered's incremental start, as rows (pair, changed_from,
    anchor_at): per pair of the universe, the first bar of `bars` (staging)
    ingested after the newest ingested_at the model holds for the pair, and
    the model's last bar before it (null for a pair it does not hold yet);
    pairs with nothing new are left out. -#}
{% macro bqx_changed_bars_sql(bars) -%}
    {{ return(adapter.dispatch('bqx_changed_bars_sql', 'bqx')(bars)) }}
{%- endmacro %}

{#- PostgreSQL: index walks per pair of the universe. -#}
{% macro default__bqx_changed_bars_sql(bars) -%}
with seen as (
    select
        universe.pair,
        coalesce(
            (select max(t.ingested_at) from {{ this }} as t where t.pair = universe.pair),
            cast('1900-01-01 00:00:00+00' as timestamp with time zone)
        ) as seen_until
    from {{ bqx_universe_relation() }}
),

changed as (
    select
        seen.pair,
        (select min(s.bar_start_at) from {{ bars }} as s
         where s.pair = seen.pair and s.ingested_at > seen.seen_until) as changed_from
    from seen
)

select
    changed.pair,
    changed.changed_from,
    (select max(k.bar_start_at) from {{ this }} as k
     where k.pair = changed.pair and k.bar_start_at < changed.changed_from) as anchor_at
from changed
where changed.changed_from is not null
order by changed.pair
{%- endmacro %}

{#- DuckDB (no indexes; the per-pair subqueries above took 0.1 s): grouped
    joins, one pass over each table. -#}
{% macro duckdb__bqx_changed_bars_sql(bars) -%}
with seen as (
    select
        universe.pair,
        coalesce(
            max(t.ingested_at),
            cast('1900-01-01 00:00:00+00' as timestamp with time zone)
        ) as seen_until
    from {{ bqx_universe_relation() }}
    left join {{ this }} as t on t.pair = universe.pair
    group by universe.pair
),

changed as (
    select
        s.pair,
        min(s.bar_start_at) as changed_from
    from {{ bars }} as s
    inner join seen on s.pair = seen.pair
    where s.ingested_at > seen.seen_until
    group by s.pair
)

select
    changed.pair,
    changed.changed_from,
    max(k.bar_start_at) as anchor_at
from changed
left join {{ this }} as k
    on k.pair = changed.pair and k.bar_start_at < changed.changed_from
group by changed.pair, changed.changed_from
order by changed.pair
{%- endmacro %}

{#- Per pair of the universe, the first bar of int_candles_numbered that this
    incremental run must write: new or changed in this invocation (batch_id), or
    after the last bar already in the mart (event_timestamp = bar start + 1
    minute). Read with run_query before the model's SQL is rendered, so the
    model gets literal bounds: on PostgreSQL each lookup is a walk down an
    index ((pair, event_timestamp) of the mart, (pair, bar_start_at) and
    (batch_id) of int_candles_numbered), never a scan of the history.
    Returns rows (pair, cut_n, cut_at, last_n), last_n the pair's newest bar_n;
    pairs with nothing to write are left out. A model that needs the cuts more
    than once (bqx_per_row_tail, then its inputs) reads them once and passes them
    on (`cuts=`). -#}
{% macro bqx_tail_cuts() -%}
{%- if not (execute and is_incremental()) -%}{{ return([]) }}{%- endif -%}
{{ return(adapter.dispatch('bqx_tail_cuts', 'bqx')()) }}
{%- endmacro %}

{% macro default__bqx_tail_cuts() -%}
{{ return(run_query(bqx_tail_cuts_sql()).rows) }}
{%- endmacro %}

{#- DuckDB: the cuts int_candles_numbered stored for this mart in this
    invocation (bqx_store_tail_cuts), else (int_candles_numbered not run
    first, or the mart not selected with it) the mart's own query. -#}
{% macro duckdb__bqx_tail_cuts() -%}
{%- set stored = run_query(
    "select pair, cut_n, cut_at, last_n from " ~ bqx_tail_cuts_relation()
    ~ " where invocation_id = '" ~ invocation_id ~ "' and model = '" ~ this.identifier ~ "'"
    ~ " order by pair nulls first"
).rows -%}
{%- if stored | length > 0 and stored[0][0] is none -%}
{{ return(stored[1:]) }}
{%- endif -%}
{{ return(run_query(bqx_tail_cuts_sql()).rows) }}
{%- endmacro %}

{#- DuckDB: where int_candles_numbered keeps the tail cuts of the marts for the
    invocation that last ran it (bqx_store_tail_cuts): one row per (model,
    pair) to write (its cut, and write_at, the first bar the mart rewrites),
    and one row (pair null) per model whose cuts it computed, with the UTC
    days the mart rewrites (`days`, comma-separated). Replaced by on-run-start
    (bqx_prepare_tail_cuts): its rows only ever serve the invocation that
    wrote them. -#}
{% macro bqx_tail_cuts_relation() -%}
{{ return(api.Relation.create(
    database=target.database, schema='intermediate', identifier='int_candles_numbered__tail_cuts'
)) }}
{%- endmacro %}

{% macro bqx_prepare_tail_cuts() -%}
    {{ return(adapter.dispatch('bqx_prepare_tail_cuts', 'bqx')()) }}
{%- endmacro %}
{% macro default__bqx_prepare_tail_cuts() -%}{%- endmacro %}
{% macro duckdb__bqx_prepare_tail_cuts() -%}
{%- set cuts = bqx_tail_cuts_relation() -%}
create schema if not exists {{ cuts.database }}.{{ cuts.schema }};
create or replace table {{ cuts }} (
    invocation_id varchar,
    model varchar,
    pair varchar,
    cut_n bigint,
    cut_at timestamp with time zone,
    last_n bigint,
    write_at timestamp with time zone,
    days varchar
)
{%- endmacro %}

{#- The bars before each pair's cut that a mart rewrites too (model meta
    `bqx_relabel`, set by bqx_mart_config: the labels' horizon; 0 for the
    others) of `node` (a graph node) or of the model being run. -#}
{% macro bqx_tail_relabel(node=none) -%}
{%- set meta = (node.config.meta if node is not none else config.get('meta')) or {} -%}
{{ return(meta.get('bqx_relabel', 0)) }}
{%- endmacro %}

{#- The UTC day of a bar_start_at, as the name of its Parquet file. -#}
{% macro bqx_day_sql(column='bar_start_at') -%}
strftime(cast(timezone('UTC', {{ column }}) as date), '%Y-%m-%d')
{%- endmacro %}

{#- int_candles_numbered's post-hook on DuckDB: the tail cuts of the marts
    selected in this invocation (models with meta bqx_tail_cuts that exist),
    stored for them (bqx_tail_cuts_relation). Each mart would otherwise scan
    int_candles_numbered and itself for them (14 ms alone, about 50 ms beside
    another model's query, ten times per refresh), and its materialization
    would look up the days it rewrote.

    Per pair: last_n, the first bar written by this invocation (batch_n) and
    since_at, the bar before it (the pair's newest bar when it has none): a
    mart that is up to date holds the pair up to since_at or later. Each
    mart's last bar per pair (done) is read from since_at on only (a literal:
    DuckDB skips the older row groups), and cut_n = least(batch_n, the bar
    after done). A mart for which some pair has no row from since_at on
    (behind, or without the pair), or whose last row is no longer a bar, is
    left out: it reads its own cuts (bqx_tail_cuts_sql) and is written by
    dbt-duckdb's incremental materialization. For an up-to-date mart cut_n
    is batch_n, so the first bar it rewrites is at or after the bar
    `max(bqx_relabel)` before batch_n (relabel_at): the days are read from
    there on (a literal again), and a mart whose write_at were earlier is
    left out too. -#}
{% macro bqx_store_tail_cuts() -%}
    {{ return(adapter.dispatch('bqx_store_tail_cuts', 'bqx')()) }}
{%- endmacro %}
{% macro default__bqx_store_tail_cuts() -%}{%- endmacro %}
{% macro duckdb__bqx_store_tail_cuts() -%}
{%- set marts = [] -%}
{%- set pairs = [] -%}
{%- if execute -%}
{%- for node in graph.nodes.values()
    if node.resource_type == 'model'
    and node.config.meta.get('bqx_tail_cuts')
    and node.unique_id in selected_resources -%}
{%- set relation = adapter.get_relation(database=node.database, schema=node.schema, identifier=node.alias) -%}
{%- if relation is not none -%}
{%- do marts.append({
    'relation': relation,
    'relabel': bqx_tail_relabel(node),
    'cross': node.config.meta.get('bqx_tail_cross', false),
}) -%}
{%- endif -%}
{%- endfor -%}
{%- if marts -%}
{%- set relabel_max = marts | map(attribute='relabel') | max -%}
{%- set pairs = run_query(
    "with pairs as (select pair, max(bar_n) as last_n, min(bar_n) filter (where batch_id = '"
    ~ invocation_id ~ "') as batch_n from " ~ this ~ " group by pair)"
    ~ " select pairs.pair, pairs.last_n, pairs.batch_n, b.bar_start_at as since_at,"
    ~ " r.bar_start_at as relabel_at from pairs"
    ~ " left join " ~ this ~ " as b on b.pair = pairs.pair"
    ~ " and b.bar_n = coalesce(pairs.batch_n, pairs.last_n + 1) - 1"
    ~ " left join " ~ this ~ " as r on r.pair = pairs.pair"
    ~ " and r.bar_n = greatest(coalesce(pairs.batch_n, pairs.last_n + 1) - " ~ relabel_max ~ ", 0)"
).rows -%}
{%- endif -%}
{%- endif -%}
{%- set since = pairs | map(attribute=3) | reject('none') | list -%}
{%- set relabel_at = pairs | map(attribute=4) | reject('none') | list -%}
{%- if marts and pairs and since | length == pairs | length and relabel_at | length == pairs | length -%}
{%- set t_since = since | min -%}
{%- set t_relabel = relabel_at | min -%}
delete from {{ bqx_tail_cuts_relation() }};
insert into {{ bqx_tail_cuts_relation() }}
with pairs (pair, last_n, batch_n, since_at) as (
    values
    {% for p in pairs -%}
    ('{{ p[0] }}', {{ p[1] }}, {{ p[2] if p[2] is not none else 'null' }}, {{ bqx_ts_literal(p[3]) }}){{ "," if not loop.last }}
    {% endfor %}
),

marts (model, relabel, is_cross) as (
    values
    {% for m in marts -%}
    ('{{ m.relation.identifier }}', {{ m.relabel }}, {{ m.cross }}){{ "," if not loop.last }}
    {% endfor %}
),

done as (
    {% for m in marts -%}
    select '{{ m.relation.identifier }}' as model, pair, max(bar_start_at) as done_at
    from {{ m.relation }}
    where bar_start_at >= {{ bqx_ts_literal(t_since) }}
    group by pair
    {{ "union all" if not loop.last }}
    {% endfor %}
),

done_n as (
    select done.model, done.pair, done.done_at, bars.bar_n
    from done
    inner join {{ this }} as bars
        on bars.pair = done.pair and bars.bar_start_at = done.done_at
),

up_to_date as (
    select done_n.model
    from done_n
    inner join pairs on pairs.pair = done_n.pair and done_n.done_at >= pairs.since_at
    group by done_n.model
    having count(*) = {{ pairs | length }}
),

cut as (
    select
        up_to_date.model,
        pairs.pair,
        pairs.last_n,
        least(coalesce(pairs.batch_n, pairs.last_n + 1), done_n.bar_n + 1) as cut_n
    from up_to_date
    cross join pairs
    inner join done_n on done_n.model = up_to_date.model and done_n.pair = pairs.pair
),

written as (
    select cut.model, cut.pair, cut.cut_n, bars.bar_start_at as cut_at, cut.last_n
    from cut
    inner join {{ this }} as bars on bars.pair = cut.pair and bars.bar_n = cut.cut_n
    where cut.cut_n <= cut.last_n
),

starts as (
    select
        written.*,
        marts.is_cross,
        case
            when marts.is_cross then min(written.cut_at) over (partition by written.model)
            else first_bar.bar_start_at
        end as write_at
    from written
    inner join marts on marts.model = written.model
    inner join {{ this }} as first_bar
        on first_bar.pair = written.pair
        and first_bar.bar_n = greatest(written.cut_n - marts.relabel, 0)
),

recent as (
    select pair, bar_start_at, {{ bqx_day_sql() }} as day
    from {{ this }}
    where bar_start_at >= {{ bqx_ts_literal(t_relabel) }}
),

days as (
    select starts.model, string_agg(distinct recent.day, ',' order by recent.day) as days
    from starts
    inner join recent on recent.pair = starts.pair and recent.bar_start_at >= starts.write_at
    where not starts.is_cross
    group by starts.model
    union all
    select cross_start.model, string_agg(distinct recent.day, ',' order by recent.day) as days
    from (
        select model, min(write_at) as write_at from starts where is_cross group by model
    ) as cross_start
    inner join recent on recent.bar_start_at >= cross_start.write_at
    group by cross_start.model
),

stored as (
    select up_to_date.model
    from up_to_date
    where not exists (
        select 1 from starts
        where starts.model = up_to_date.model
            and starts.write_at < {{ bqx_ts_literal(t_relabel) }}
    )
)

select '{{ invocation_id }}', starts.model, starts.pair, starts.cut_n, starts.cut_at, starts.last_n, starts.write_at, null
from starts
inner join stored on stored.model = starts.model
union all
select '{{ invocation_id }}', stored.model, null, null, null, null, null, days.days
from stored
left join days on days.model = stored.model
{%- endif -%}
{%- endmacro %}

{% macro bqx_tail_cuts_sql() -%}
    {{ return(adapter.dispatch('bqx_tail_cuts_sql', 'bqx')()) }}
{%- endmacro %}

{#- PostgreSQL: index walks per pair of the universe. -#}
{% macro default__bqx_tail_cuts_sql() -%}
{%- set bars = ref('int_candles_numbered') -%}
with done as (
    select
        universe.pair,
        coalesce(
            (select max(t.event_timestamp) from {{ this }} as t where t.pair = universe.pair)
                - interval '1 minute',
            cast('1900-01-01 00:00:00+00' as timestamp with time zone)
        ) as done_until
    from {{ bqx_universe_relation() }}
),

cuts as (
    select
        done.pair,
        least(
            (select min(b.bar_start_at) from {{ bars }} as b
             where b.pair = done.pair and b.batch_id = '{{ invocation_id }}'),
            (select min(b.bar_start_at) from {{ bars }} as b
             where b.pair = done.pair and b.bar_start_at > done.done_until)
        ) as cut_at
    from done
)

select
    cuts.pair,
    (select b.bar_n from {{ bars }} as b
     where b.pair = cuts.pair and b.bar_start_at = cuts.cut_at) as cut_n,
    cuts.cut_at,
    (select max(b.bar_n) from {{ bars }} as b where b.pair = cuts.pair) as last_n
from cuts
where cuts.cut_at is not null
order by cuts.pair
{%- endmacro %}

{#- DuckDB (no index walks; column scans are cheap): grouped, in one pass. -#}
{% macro duckdb__bqx_tail_cuts_sql() -%}
{%- set bars = ref('int_candles_numbered') -%}
with done as (
    select pair, max(event_timestamp) - interval '1 minute' as done_until
    from {{ this }}
    group by pair
)

select
    bars.pair,
    min(bars.bar_n) filter (where bars.is_cut) as cut_n,
    min(bars.bar_start_at) filter (where bars.is_cut) as cut_at,
    max(bars.bar_n) as last_n
from (
    select
        bars.pair,
        bars.bar_n,
        bars.bar_start_at,
        bars.batch_id = '{{ invocation_id }}'
            or done.done_until is null
            or bars.bar_start_at > done.done_until as is_cut
    from {{ bars }} as bars
    left join done on bars.pair = done.pair
) as bars
group by bars.pair
having bool_or(bars.is_cut)
order by bars.pair

{%- endmacro %}

{#- Incremental run: the most rows any pair writes (its newest bar_n minus its
    cut, plus one), from the cuts (bqx_tail_cuts). none on a full build or when
    nothing is written. Lets a mart pick a per-row plan for a short tail. -#}
{% macro bqx_tail_rows_max(cuts=none) -%}
{%- set cuts = bqx_tail_cuts() if cuts is none else cuts -%}
{%- if not cuts -%}{{ return(none) }}{%- endif -%}
{%- set written = [] -%}
{%- for row in cuts -%}{%- do written.append(row[3] - row[1] + 1) -%}{%- endfor -%}
{{ return(written | max) }}
{%- endmacro %}

{#- Inputs of a per-pair mart: the rows of int_candles_numbered it reads and
    which of them it writes (is_output).

    Full build: every row. Incremental: per pair, the cut is the first bar to
    write (bqx_tail_cuts); the mart writes rows from `cut - relabel` (labels
    change when future bars arrive; bqx_mart_config's relabel) and reads
    `lookback` more rows before that. `cuts`: bqx_tail_cuts, when the model
    read them already. -#}
{% macro bqx_tail_inputs(lookback, cuts=none) -%}
{%- set bars_model = ref('int_candles_numbered') -%}
{%- set relabel = bqx_tail_relabel() -%}
{%- if is_incremental() -%}
{%- set cuts = bqx_tail_cuts() if cuts is none else cuts -%}
inputs as (

    select
        bars.*,
        {% if cuts -%}
        case
            {% for row in cuts -%}
            when bars.pair = '{{ row[0] }}' then bars.bar_n >= {{ row[1] - relabel }}
            {% endfor -%}
        end
        {%- else -%}
        false
        {%- endif %} as is_output
    from {{ bars_model }} as bars
    where
        {% for row in cuts -%}
        (bars.pair = '{{ row[0] }}' and bars.bar_n >= {{ [row[1] - relabel - lookback, 0] | max }})
        {{- " or" if not loop.last }}
        {% else -%}
        false
        {%- endfor %}

)
{%- else -%}
inputs as (

    select
        bars.*,
        true as is_output
    from {{ bars_model }} as bars

)
{%- endif -%}
{%- endmacro %}

{#- Common config of the per-(pair, bar) marts. On PostgreSQL the
    point-in-time join (bqx.offline_store.BqxPostgresOfflineStore) walks the
    (pair, event_timestamp) index once per entity row.

    How an incremental run rewrites the mart's tail (bqx_tail_inputs,
    bqx_cross_tail_inputs; the DuckDB materialization deletes exactly those
    rows): `relabel`, the bars before each pair's cut that change too (the
    labels' horizon), or `cross`, every pair from the earliest cut on. -#}
{% macro bqx_mart_config(relabel=0, cross=false) -%}
{{ config(
    meta={'bqx_tail_cuts': true, 'bqx_relabel': relabel, 'bqx_tail_cross': cross},
    unique_key=['pair', 'event_timestamp'],
    incremental_strategy='delete+insert',
    indexes=bqx_indexes([{'columns': ['pair', 'event_timestamp'], 'unique': true}]),
) }}
{%- endmacro %}

{#- The value of column `col` of int_candles_numbered `w` bars back in the
    pair, for a row of `inputs`: lag() over `window w_pair as (partition by
    pair order by bar_n)`, or, when `per_row` (bqx_per_row_tail), a lookup
    of bar_n - w (then `inputs` need not hold the lookback). -#}
{% macro bqx_lag(col, w, per_row=false) -%}
    {%- if per_row -%}
    (select lagged.{{ col }} from {{ ref('int_candles_numbered') }} as lagged
     where lagged.pair = inputs.pair and lagged.bar_n = inputs.bar_n - {{ w }})
    {%- else -%}
    lag({{ col }}, {{ w }}) over w_pair
    {%- endif -%}
{%- endmacro %}

{#- Sum of the last `w` rows of a column from its running sum `cum_col`
    (exact when the running sum is an exact integer type); null for n < w-1.
    Rows of `inputs`; see bqx_lag. -#}
{% macro bqx_wsum_from_cum(cum_col, w, per_row=false) -%}
    case
        when bar_n = {{ w - 1 }} then {{ cum_col }}
        when bar_n >= {{ w }} then {{ cum_col }} - {{ bqx_lag(cum_col, w, per_row) }}
    end
{%- endmacro %}

{#- (pair, c0): the pair's first close at or after the baseline (var
    bqx_baseline, features.md item 1); default its first bar. For each pair of
    `inputs`, looked up in the pair's whole history (an index walk on
    PostgreSQL), so incremental runs agree with full ones. -#}
{% macro bqx_base_closes_cte() -%}
{%- set baseline = var('bqx_baseline', none) -%}
{%- set bars = ref('int_candles_numbered') -%}
base_keys as (

    select
        tail_pairs.pair,
        (
            select min(b.bar_n)
            from {{ bars }} as b
            where b.pair = tail_pairs.pair
            {%- if baseline %}
                and b.bar_start_at >= cast('{{ baseline }}' as timestamp with time zone)
            {%- endif %}
        ) as base_n
    from (select distinct pair from inputs) as tail_pairs

),

base_closes as (

    select
        bars.pair,
        bars.close_price as c0
    from {{ bars }} as bars
    inner join base_keys
        on bars.pair = base_keys.pair
        and bars.bar_n = base_keys.base_n

)
{%- endmacro %}

{#- Inputs of a cross-pair mart (corr, strength, tri): all pairs' rows in a
    time range. Full build: every row. Incremental: t_cut is the earliest
    cut bar over all pairs (bqx_tail_cuts); the mart rewrites every pair's
    rows from t_cut and reads from t_lb. The floor of t_lb is the earliest
    time at which some pair with rows after t_cut still has `lookback` of
    its own bars before t_cut. A mart whose lookback is counted in shared
    timestamps (corr: common timestamps of a link; tri: complete triangles)
    passes `bound`, a macro (t_cut, t_floor) -> SQL of one timestamp: the
    earliest of the rows its windows reach before t_cut, found between the
    floor and t_cut (index walks per link on PostgreSQL); t_lb is then that
    timestamp, or the floor when there is none. All are read with run_query
    and given to the model as literals. `lookback` 0: only the rows written
    (a mart that reads its own lookback, as features_corr's per-row plan). -#}
{% macro bqx_cross_tail_inputs(lookback, bound=none, cuts=none) -%}
{%- set bars_model = ref('int_candles_numbered') -%}
{%- if is_incremental() -%}
{%- set cuts = bqx_tail_cuts() if cuts is none else cuts -%}
{%- set bounds = none -%}
{%- if cuts -%}
{%- set t_cut = cuts | map(attribute=2) | min -%}
{%- if lookback > 0 -%}
{%- set t_floor = run_query(bqx_cross_floor_sql(bqx_ts_literal(t_cut), lookback)).rows[0][0] -%}
{%- else -%}
{%- set t_floor = t_cut -%}
{%- endif -%}
{%- set bounds = (t_cut, t_floor) -%}
{%- if bound is not none and t_floor is not none -%}
{%- set t_lb = run_query(bound(t_cut, t_floor)).rows[0][0] -%}
{%- if t_lb is not none -%}
{%- set bounds = (t_cut, t_lb) -%}
{%- endif -%}
{%- endif -%}
{%- endif -%}
inputs as (

    select
        bars.*,
        {% if bounds -%}
        bars.bar_start_at >= {{ bqx_ts_literal(bounds[0]) }}
        {%- else -%}
        false
        {%- endif %} as is_output
    from {{ bars_model }} as bars
    where
        {% if bounds -%}
        bars.bar_start_at >= {{ bqx_ts_literal(bounds[1]) }}
        {%- else -%}
        false
        {%- endif %}

)
{%- else -%}
inputs as (

    select
        bars.*,
        true as is_output
    from {{ bars_model }} as bars

)
{%- endif -%}
{%- endmacro %}

{#- SQL of one timestamp: the floor of a cross-pair mart's lookback for a run
    that writes from `t_cut_sql` (SQL of a timestamp) on: the earliest time at
    which some pair with bars at or after the cut still has `lookback` of its
    own bars before it (index walks per pair on PostgreSQL). -#}
{% macro bqx_cross_floor_sql(t_cut_sql, lookback) -%}
{%- set bars_model = ref('int_candles_numbered') -%}
select min((
    select b.bar_start_at
    from {{ bars_model }} as b
    where b.pair = first_out.pair
        and b.bar_n = greatest(first_out.out_n - {{ lookback }}, 0)
))
from (
    select
        universe.pair,
        (select b.bar_n from {{ bars_model }} as b
         where b.pair = universe.pair and b.bar_start_at >= {{ t_cut_sql }}
         order by b.bar_start_at
         limit 1) as out_n
    from {{ bqx_universe_relation() }}
) as first_out
{%- endmacro %}
