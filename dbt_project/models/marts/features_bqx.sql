{#- features.md item 2: backward momentum bqx_{w} = 100 (c[n] - c[n-w]) / c[n-w]. -#}
{{ bqx_mart_config() }}
{%- set windows = var('bqx_windows') %}

{#- a one-minute refresh (PostgreSQL): lags looked up per written row -#}
{%- set cuts = bqx_tail_cuts() %}
{%- set per_row = bqx_per_row_tail(cuts) %}

with

{{ bqx_tail_inputs(lookback=0 if per_row else windows | max, cuts=cuts) }},

computed as (

    select
        pair,
        bar_start_at,
        bar_start_at + interval '1 minute' as event_timestamp,
        {% for w in windows -%}
        case
            when bar_n >= {{ w }}
                then 100 * (close_price - {{ bqx_lag('close_price', w, per_row) }})
                    / {{ bqx_lag('close_price', w, per_row) }}
        end as bqx_{{ w }},
        {% endfor -%}
        is_output
    from inputs
    window w_pair as (partition by pair order by bar_n)

)

select
    pair,
    bar_start_at,
    event_timestamp,
    {% for w in windows -%}
    bqx_{{ w }}{{ "," if not loop.last }}
    {% endfor %}
from computed
where is_output
