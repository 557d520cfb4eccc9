{#- features.md item 7: currency strength. s_k(t) = mean over the universe's
    pairs containing k with a return at t of (+r if k is the base else -r);
    csi_{w} = sum of the last w values of s_k ending exactly at the bar. -#}
{{ bqx_mart_config(cross=true) }}
{%- set windows = var('csi_windows') %}

with

{{ bqx_cross_tail_inputs(lookback=[windows | max, var('cross_lookback_bars')] | max) }},

pair_currencies as (

    {{ bqx_pair_currencies_sql() }}

),

signed_returns as (

    select
        pair_currencies.base_ccy as currency,
        inputs.bar_start_at,
        inputs.log_return as signed_return
    from inputs
    inner join pair_currencies on inputs.pair = pair_currencies.pair
    where inputs.log_return is not null

    union all

    select
        pair_currencies.quote_ccy as currency,
        inputs.bar_start_at,
        -inputs.log_return as signed_return
    from inputs
    inner join pair_currencies on inputs.pair = pair_currencies.pair
    where inputs.log_return is not null

),

strength as (

    select
        currency,
        bar_start_at,
        avg(signed_return) as strength
    from signed_returns
    group by currency, bar_start_at

),

running as (

    {#- csi windows are differences of float64 running sums of the series. -#}
    select
        currency,
        bar_start_at,
        row_number() over w_ccy as k,
        sum(strength) over (
            partition by currency order by bar_start_at
            rows between unbounded preceding and current row
        ) as cum_s
    from strength
    window w_ccy as (partition by currency order by bar_start_at)

),

indices as (

    select
        currency,
        bar_start_at,
        {% for w in windows -%}
        case
            when k = {{ w }} then cum_s
            when k > {{ w }} then cum_s - lag(cum_s, {{ w }}) over w_ccy
        end as csi_{{ w }}{{ "," if not loop.last }}
        {% endfor -%}
    from running
    window w_ccy as (partition by currency order by bar_start_at)

)

select
    inputs.pair,
    inputs.bar_start_at,
    inputs.bar_start_at + interval '1 minute' as event_timestamp,
    {% for w in windows -%}
    base_idx.csi_{{ w }} as csi_base_{{ w }},
    quote_idx.csi_{{ w }} as csi_quote_{{ w }},
    base_idx.csi_{{ w }} - quote_idx.csi_{{ w }} as csi_spread_{{ w }}{{ "," if not loop.last }}
    {% endfor %}
from inputs
inner join pair_currencies on inputs.pair = pair_currencies.pair
left join indices as base_idx
    on pair_currencies.base_ccy = base_idx.currency
    and inputs.bar_start_at = base_idx.bar_start_at
left join indices as quote_idx
    on pair_currencies.quote_ccy = quote_idx.currency
    and inputs.bar_start_at = quote_idx.bar_start_at
where inputs.is_output
