{#- Cross-adapter differences live here and only here (adapter.dispatch). -#}

{#- Exact integer type for windowed sums of x^k * Y (features.md item 5). -#}
{% macro bqx_exact_int() -%}
    {{ return(adapter.dispatch('bqx_exact_int', 'bqx')()) }}
{%- endmacro %}
{% macro default__bqx_exact_int() -%}numeric{%- endmacro %}
{% macro duckdb__bqx_exact_int() -%}hugeint{%- endmacro %}

{#- 64-bit float. -#}
{% macro bqx_double() -%}
    {{ return(adapter.dispatch('bqx_double', 'bqx')()) }}
{%- endmacro %}
{% macro default__bqx_double() -%}double precision{%- endmacro %}
{% macro duckdb__bqx_double() -%}double{%- endmacro %}

{#- Type in which float inputs of moving (windowed) sums are accumulated:
    PostgreSQL's float8 window sums restart every frame (O(w) per row), its
    numeric ones subtract the leaving row (O(1)); DuckDB's are segment
    trees either way. -#}
{% macro bqx_wsum_type() -%}
    {{ return(adapter.dispatch('bqx_wsum_type', 'bqx')()) }}
{%- endmacro %}
{% macro default__bqx_wsum_type() -%}numeric{%- endmacro %}
{% macro duckdb__bqx_wsum_type() -%}double{%- endmacro %}

{#- Whole minutes from timestamptz `start_expr` to `end_expr`. -#}
{% macro bqx_minutes_between(start_expr, end_expr) -%}
    {{ return(adapter.dispatch('bqx_minutes_between', 'bqx')(start_expr, end_expr)) }}
{%- endmacro %}
{% macro default__bqx_minutes_between(start_expr, end_expr) -%}
    cast(round(extract(epoch from ({{ end_expr }}) - ({{ start_expr }})) / 60) as bigint)
{%- endmacro %}
{% macro duckdb__bqx_minutes_between(start_expr, end_expr) -%}
    cast(round((epoch({{ end_expr }}) - epoch({{ start_expr }})) / 60) as bigint)
{%- endmacro %}

{#- timestamptz -> naive local wall time in zone `tz`. -#}
{% macro bqx_local_time(ts_expr, tz) -%}
    (({{ ts_expr }}) at time zone '{{ tz }}')
{%- endmacro %}

{#- naive wall time in zone `tz` -> timestamptz. -#}
{% macro bqx_from_local_time(ts_expr, tz) -%}
    (({{ ts_expr }}) at time zone '{{ tz }}')
{%- endmacro %}

{#- Windowed max / min over the last `w` rows (ordered by bar_n within pair).
    DuckDB: native frames (segment tree) for the windows that cannot be
    composed from a smaller one, lags for the others. PostgreSQL restarts
    max/min for every frame (O(w) per row), so it gets a doubling table in
    `bqx_window_extrema_ctes` instead. -#}
{% macro bqx_window_extrema_ctes(source_cte, windows) -%}
    {{ return(adapter.dispatch('bqx_window_extrema_ctes', 'bqx')(source_cte, windows)) }}
{%- endmacro %}

{#- A window w with a smaller window v of at least w / 2 rows is composed from
    it: the rows i-w+1 .. i are those of v's window at i and at i-(w-v), and max
    and min may count a row twice, so max_w = greatest(max_v, lag(max_v, w-v))
    exactly. Only the others are frames (the default windows: 45 framed, each of
    90 .. 2880 from the one before). Each lag is a window pass of its own, over
    narrow rows (the keys and the extrema); the source's columns join back once.
    Against 14 frames, a day's tail: 0.29 s against 0.43 s (one thread), the
    4-week build's query 1.2 s against 2.0 s (two threads). -#}
{% macro duckdb__bqx_window_extrema_ctes(source_cte, windows) -%}
{%- set ws = windows | unique | sort -%}
{%- set framed = [] -%}
{%- set composed = [] -%}
{%- for w in ws -%}
    {%- set halves = ws | select('lt', w) | select('ge', w / 2) | list -%}
    {%- if halves -%}{%- do composed.append((w, halves | max)) -%}{%- else -%}{%- do framed.append(w) -%}{%- endif -%}
{%- endfor -%}
extrema_0 as (
    select
        pair,
        bar_n,
        {% for w in framed -%}
        max(high_price) over w_{{ w }} as max_high_{{ w }},
        min(low_price) over w_{{ w }} as min_low_{{ w }}{{ "," if not loop.last }}
        {% endfor %}
    from {{ source_cte }}
    window
        {% for w in framed -%}
        w_{{ w }} as (partition by pair order by bar_n rows between {{ w - 1 }} preceding and current row){{ "," if not loop.last }}
        {% endfor %}
),
{% for w, v in composed -%}
extrema_{{ loop.index }} as (
    select
        *,
        greatest(max_high_{{ v }}, lag(max_high_{{ v }}, {{ w - v }}) over w_pair) as max_high_{{ w }},
        least(min_low_{{ v }}, lag(min_low_{{ v }}, {{ w - v }}) over w_pair) as min_low_{{ w }}
    from extrema_{{ loop.index0 }}
    window w_pair as (partition by pair order by bar_n)
),
{% endfor -%}
{{ bqx_extrema_joined(source_cte, ws, 'extrema_' ~ (composed | length)) }}
{%- endmacro %}

{% macro default__bqx_window_extrema_ctes(source_cte, windows) -%}
{#- level k holds max/min over the 2^k rows ending at the row. -#}
{%- set top = [] -%}
{%- for w in windows -%}
    {%- set ns = namespace(k=0) -%}
    {%- for k in range(0, 20) -%}{%- if 2 ** k <= w -%}{%- set ns.k = k -%}{%- endif -%}{%- endfor -%}
    {%- do top.append(ns.k) -%}
{%- endfor -%}
{%- set kmax = top | max -%}
{#- the levels carry only the keys and the levels still needed (narrow rows
    are what makes the chain cheap); the source's columns join back once. -#}
doubling_0 as (
    select pair, bar_n, high_price as hi_0, low_price as lo_0 from {{ source_cte }}
),
{% for k in range(1, kmax + 1) -%}
doubling_{{ k }} as (
    select
        pair,
        bar_n,
        {% for j in range(0, k) if j in top -%}
        hi_{{ j }}, lo_{{ j }},
        {% endfor -%}
        greatest(hi_{{ k - 1 }}, lag(hi_{{ k - 1 }}, {{ 2 ** (k - 1) }}) over w_pair) as hi_{{ k }},
        least(lo_{{ k - 1 }}, lag(lo_{{ k - 1 }}, {{ 2 ** (k - 1) }}) over w_pair) as lo_{{ k }}
    from doubling_{{ k - 1 }}
    window w_pair as (partition by pair order by bar_n)
),
{% endfor -%}
window_extrema as (
    select
        pair,
        bar_n,
        {% for w in windows -%}
        {%- set k = top[loop.index0] -%}
        {%- if 2 ** k == w -%}
        hi_{{ k }} as max_high_{{ w }},
        lo_{{ k }} as min_low_{{ w }}
        {%- else -%}
        greatest(hi_{{ k }}, lag(hi_{{ k }}, {{ w - 2 ** k }}) over w_pair) as max_high_{{ w }},
        least(lo_{{ k }}, lag(lo_{{ k }}, {{ w - 2 ** k }}) over w_pair) as min_low_{{ w }}
        {%- endif %}{{ "," if not loop.last }}
        {% endfor %}
    from doubling_{{ kmax }}
    window w_pair as (partition by pair order by bar_n)
),
{{ bqx_extrema_joined(source_cte, windows, 'window_extrema') }}
{%- endmacro %}

{#- The `extrema` CTE: the source's rows with the windows' extrema of the
    narrow CTE `extrema_cte` (pair, bar_n, max_high_w, min_low_w). -#}
{% macro bqx_extrema_joined(source_cte, windows, extrema_cte) -%}
extrema as (
    select
        source.*,
        {% for w in windows -%}
        window_extrema.max_high_{{ w }},
        window_extrema.min_low_{{ w }}{{ "," if not loop.last }}
        {% endfor %}
    from {{ source_cte }} as source
    inner join {{ extrema_cte }} as window_extrema
        on source.pair = window_extrema.pair and source.bar_n = window_extrema.bar_n
)
{%- endmacro %}

{#- Parquet copies of the marts on DuckDB (Feast reads the files; on
    PostgreSQL it reads the tables): a folder per mart,
    `$BQX_MARTS_DIR/<mart>/<YYYY-MM-DD>.parquet`, one file per UTC day of
    bar_start_at, rows ordered by (pair, event_timestamp). A run rewrites the
    files of the days it wrote (a full build: every day); each file is
    overwritten whole, so a reader never sees a day twice. Written by the
    DuckDB incremental materialization (materializations/incremental_duckdb.sql)
    for models with meta bqx_export_parquet. -#}
{% macro bqx_marts_folder() -%}
{{ return(env_var('BQX_MARTS_DIR', '../.bqx/marts') ~ '/' ~ this.identifier) }}
{%- endmacro %}

{#- The statements that write the files of `days` ('YYYY-MM-DD'), creating
    the folder first when it holds no file yet (`files`: how many it holds). -#}
{% macro bqx_export_days_sql(days, files) -%}
{%- set folder = bqx_marts_folder() -%}
{%- if days and files == 0 %}
{{ bqx_make_folder(folder) }};
{%- endif %}
{%- for d in days %}
copy (
    select * from {{ this }}
    where bar_start_at >= timestamptz '{{ d }} 00:00:00+00'
        and bar_start_at < timestamptz '{{ d }} 00:00:00+00' + interval 1 day
    order by pair, event_timestamp
) to '{{ folder }}/{{ d }}.parquet' (format parquet);
{%- endfor %}
{%- endmacro %}

{#- After dbt-duckdb's materialization: the days of the rows it wrote (those
    of its temp table, still there after an incremental run), or every day
    (a full build). -#}
{% macro bqx_export_parquet() -%}
{%- if execute -%}
    {%- set tmp = run_query(
        "select table_name from duckdb_tables() where temporary"
        ~ " and starts_with(table_name, '" ~ this.identifier ~ "__dbt_tmp')"
        ~ " order by table_name desc limit 1"
    ).columns[0].values() -%}
    {%- set written = ('temp.main."' ~ tmp[0] ~ '"') if tmp | length > 0 else this -%}
    {%- set found = run_query(
        "select distinct " ~ bqx_day_sql() ~ " as d,"
        ~ " (select count(*) from glob('" ~ bqx_marts_folder() ~ "/*.parquet')) as files"
        ~ " from " ~ written ~ " order by d"
    ) -%}
    {%- set days = found.columns[0].values() -%}
    {%- if days | length > 0 -%}
        {%- do run_query(bqx_export_days_sql(days, found.rows[0][1])) -%}
    {%- endif -%}
{%- endif -%}
{%- endmacro %}

{#- DuckDB's COPY does not create folders; a partitioned COPY of no rows
    creates one level (its target) and leaves files already there. -#}
{% macro bqx_make_folder(path) -%}
    copy (select 1 as _none, 1 as _part where 1 = 0)
    to '{{ path }}' (format parquet, partition_by (_part), overwrite_or_ignore true)
{%- endmacro %}

{#- Create the Parquet folder before the marts are exported (the warehouse
    file's folder already exists). -#}
{% macro bqx_prepare_marts_dir() -%}
    {{ return(adapter.dispatch('bqx_prepare_marts_dir', 'bqx')()) }}
{%- endmacro %}
{% macro default__bqx_prepare_marts_dir() -%}
    select 1
{%- endmacro %}
{% macro duckdb__bqx_prepare_marts_dir() -%}
    {{ bqx_make_folder(env_var('BQX_MARTS_DIR', '../.bqx/marts')) }}
{%- endmacro %}

{#- Whether this incremental run computes its windowed sums, lags and
    extrema per written row (bqx_lag, features_volatility) rather than with window
    functions over the whole lookback. PostgreSQL: when no pair writes more
    than var per_row_max_rows rows (a one-minute refresh of `bqx features
    follow`); each lookup is then a walk of the (pair, bar_n) index. DuckDB:
    never (it has no such index, and its window passes are cheap). `cuts`:
    bqx_tail_cuts, when the model read them already. -#}
{% macro bqx_per_row_tail(cuts=none) -%}
    {{ return(adapter.dispatch('bqx_per_row_tail', 'bqx')(cuts)) }}
{%- endmacro %}
{% macro default__bqx_per_row_tail(cuts=none) -%}
    {%- set rows = bqx_tail_rows_max(cuts) -%}
    {{ return(rows is not none and rows <= var('per_row_max_rows')) }}
{%- endmacro %}
{% macro duckdb__bqx_per_row_tail(cuts=none) -%}
    {{ return(false) }}
{%- endmacro %}

{#- Indexes of a model: PostgreSQL walks them (incremental tail lookups, the
    point-in-time join). DuckDB gets none: its scans need no index, and ART
    indexes would be rewritten at checkpoints, held in memory and, when the
    table is replaced, leave free blocks behind in the warehouse file. -#}
{% macro bqx_indexes(indexes) -%}
    {{ return(adapter.dispatch('bqx_indexes', 'bqx')(indexes)) }}
{%- endmacro %}
{% macro default__bqx_indexes(indexes) -%}
    {{ return(indexes) }}
{%- endmacro %}
{% macro duckdb__bqx_indexes(indexes) -%}
    {{ return([]) }}
{%- endmacro %}

{#- Ends a CTE body that later CTEs reference many times per row: PostgreSQL
    pulls simple subqueries up and so re-evaluates their expressions at every
    reference (numeric arithmetic, many times over); `offset 0` keeps it a
    separate step. DuckDB dedupes common subexpressions itself. -#}
{% macro bqx_fence() -%}
    {{ return(adapter.dispatch('bqx_fence', 'bqx')()) }}
{%- endmacro %}
{% macro default__bqx_fence() -%}offset 0{%- endmacro %}
{% macro duckdb__bqx_fence() -%}{%- endmacro %}

{#- Per-model session settings, run as a pre-hook inside the model's
    transaction: PostgreSQL's default work_mem (4MB) sends every window sort
    of a mart to disk; and no JIT: the planner's cost of a refresh that
    looks rows up per written row (bqx_per_row_tail) is far above
    jit_above_cost, and compiling it took 6-12 s for a query that runs in
    milliseconds. -#}
{% macro bqx_model_tuning() -%}
    {{ return(adapter.dispatch('bqx_model_tuning', 'bqx')()) }}
{%- endmacro %}
{% macro default__bqx_model_tuning() -%}
    select
        set_config('work_mem', '{{ var("pg_work_mem", "256MB") }}', true),
        set_config('jit', 'off', true)
{%- endmacro %}
{#- DuckDB: nothing to set (an empty hook runs no statement). -#}
{% macro duckdb__bqx_model_tuning() -%}{%- endmacro %}
