{#- Inputs of a per-pair mart: the rows of int_candles_numbered it reads and
    which of them it writes (is_output).

    Full build: every row. Incremental: per pair, the first row that is new
    or changed in this invocation (batch_id) or not yet in the mart is the
    cut; the mart writes rows from `cut - relabel` (labels change when future
    bars arrive) and reads `lookback` more rows before that. -#}
{% macro bqx_tail_inputs(lookback, relabel=0) -%}
{%- set bars_model = ref('int_candles_numbered') -%}
{%- if is_incremental() -%}
done as (

    select pair, max(bar_start_at) as done_until
    from {{ this }}
    group by pair

),

cutoffs as (

    select
        bars.pair,
        min(bars.bar_n) - {{ relabel }} as cut_n
    from {{ bars_model }} as bars
    left join done on bars.pair = done.pair
    where bars.batch_id = '{{ invocation_id }}'
        or done.done_until is null
        or bars.bar_start_at > done.done_until
    group by bars.pair

),

inputs as (

    select
        bars.*,
        bars.bar_n >= cutoffs.cut_n as is_output
    from {{ bars_model }} as bars
    inner join cutoffs on bars.pair = cutoffs.pair
    where bars.bar_n >= cutoffs.cut_n - {{ lookback }}

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

{#- Common config of the per-(pair, bar) marts. -#}
{% macro bqx_mart_config() -%}
{{ config(
    unique_key=['pair', 'bar_start_at'],
    incremental_strategy='delete+insert',
) }}
{%- endmacro %}

{#- Sum of the last `w` rows of a column from its running sum `cum_col`
    (exact when the running sum is an exact integer type); null for n < w-1.
    Needs `window w_pair as (partition by pair order by bar_n)`. -#}
{% macro bqx_wsum_from_cum(cum_col, w) -%}
    case
        when bar_n = {{ w - 1 }} then {{ cum_col }}
        when bar_n >= {{ w }} then {{ cum_col }} - lag({{ cum_col }}, {{ w }}) over w_pair
    end
{%- endmacro %}

{#- (pair, c0): the pair's first close at or after the baseline (var
    bqx_baseline, features.md item 1); default its first bar. Reads the whole
    pair history (one cheap aggregate), so incremental runs agree with full
    ones. -#}
{% macro bqx_base_closes_cte() -%}
{%- set baseline = var('bqx_baseline', none) -%}
base_keys as (

    select
        pair,
        min(bar_n) as base_n
    from {{ ref('int_candles_numbered') }}
    {%- if baseline %}
    where bar_start_at >= cast('{{ baseline }}' as timestamp with time zone)
    {%- endif %}
    group by pair

),

base_closes as (

    select
        bars.pair,
        bars.close_price as c0
    from {{ ref('int_candles_numbered') }} as bars
    inner join base_keys
        on bars.pair = base_keys.pair
        and bars.bar_n = base_keys.base_n

)
{%- endmacro %}

{#- Inputs of a cross-pair mart (corr, strength, tri): all pairs' rows in a
    time range. Full build: every row. Incremental: t_cut is the earliest
    cut bar (see bqx_tail_inputs) over all pairs; the mart rewrites every
    pair's rows from t_cut and reads from t_lb, the earliest time at which
    some pair with rows after t_cut still has `lookback` of its own bars
    before t_cut. -#}
{% macro bqx_cross_tail_inputs(lookback) -%}
{%- set bars_model = ref('int_candles_numbered') -%}
{%- if is_incremental() -%}
done as (

    select pair, max(bar_start_at) as done_until
    from {{ this }}
    group by pair

),

cut_time as (

    select min(bars.bar_start_at) as t_cut
    from {{ bars_model }} as bars
    left join done on bars.pair = done.pair
    where bars.batch_id = '{{ invocation_id }}'
        or done.done_until is null
        or bars.bar_start_at > done.done_until

),

first_out as (

    select
        bars.pair,
        min(bars.bar_n) as out_n
    from {{ bars_model }} as bars
    cross join cut_time
    where bars.bar_start_at >= cut_time.t_cut
    group by bars.pair

),

lower_time as (

    select min(bars.bar_start_at) as t_lb
    from {{ bars_model }} as bars
    inner join first_out on bars.pair = first_out.pair
    where bars.bar_n = greatest(first_out.out_n - {{ lookback }}, 0)

),

inputs as (

    select
        bars.*,
        bars.bar_start_at >= cut_time.t_cut as is_output
    from {{ bars_model }} as bars
    cross join cut_time
    cross join lower_time
    where bars.bar_start_at >= lower_time.t_lb

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
