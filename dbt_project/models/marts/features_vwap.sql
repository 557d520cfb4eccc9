{#- features.md item 4: vwap_{w} and vwap_dev_{w}, from exact running sums of
    v and (H + L + C) v in price points: vwap = sum(3 tp v) / (3 sum(v)). -#}
{{ bqx_mart_config() }}
{%- set windows = var('bqx_windows') %}

{#- a one-minute refresh (PostgreSQL): lags looked up per written row -#}
{%- set cuts = bqx_tail_cuts() %}
{%- set per_row = bqx_per_row_tail(cuts) %}

with

{{ bqx_tail_inputs(lookback=0 if per_row else windows | max, cuts=cuts) }},

sums as (

    select
        pair,
        bar_start_at,
        close_price,
        {% for w in windows -%}
        {{ bqx_wsum_from_cum('cum_v', w, per_row) }} as sum_v_{{ w }},
        {{ bqx_wsum_from_cum('cum_tpv3', w, per_row) }} as sum_tpv3_{{ w }},
        {% endfor -%}
        is_output
    from inputs
    window w_pair as (partition by pair order by bar_n)

),

vwaps as (

    select
        pair,
        bar_start_at,
        close_price,
        {% for w in windows -%}
        case
            when sum_v_{{ w }} > 0
                then cast(sum_tpv3_{{ w }} as {{ bqx_double() }})
                    / (3000000 * cast(sum_v_{{ w }} as {{ bqx_double() }}))
        end as vwap_{{ w }},
        {% endfor -%}
        is_output
    from sums
    where is_output

)

select
    pair,
    bar_start_at,
    bar_start_at + interval '1 minute' as event_timestamp,
    {% for w in windows -%}
    vwap_{{ w }},
    100 * (close_price - vwap_{{ w }}) / vwap_{{ w }} as vwap_dev_{{ w }}{{ "," if not loop.last }}
    {% endfor %}
from vwaps
