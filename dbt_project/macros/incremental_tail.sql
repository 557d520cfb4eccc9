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
