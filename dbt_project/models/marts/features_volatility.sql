{#- features.md item 3: ret_std_{w} (bp, ddof 1) and range_{w}. The return
    moments of a window are differences of float64 running sums of r and r^2
    (O(rows) for any window; equal returns give exactly zero variance). -#}
{{ bqx_mart_config() }}
{%- set windows = var('bqx_windows') %}
{#- a one-minute refresh (PostgreSQL): window sums and extrema per written
    row, each one aggregate over its largest window read by the (pair, bar_n)
    index, not window passes over the whole lookback -#}
{%- set cuts = bqx_tail_cuts() %}
{%- set per_row = bqx_per_row_tail(cuts) %}

with

{{ bqx_tail_inputs(lookback=0 if per_row else windows | max, cuts=cuts) }},

{% if per_row -%}
extrema as (

    select
        inputs.*,
        window_rows.*
    from inputs
    cross join lateral (
        select
            {% for w in windows -%}
            {%- set in_window = "where bars.bar_n > inputs.bar_n - " ~ w -%}
            sum(coalesce(bars.log_return, 0)) filter ({{ in_window }}) as sr_{{ w }},
            sum(coalesce(bars.log_return * bars.log_return, 0)) filter ({{ in_window }}) as sr2_{{ w }},
            max(bars.high_price) filter ({{ in_window }}) as max_high_{{ w }},
            min(bars.low_price) filter ({{ in_window }}) as min_low_{{ w }}{{ "," if not loop.last }}
            {% endfor %}
        from {{ ref('int_candles_numbered') }} as bars
        where bars.pair = inputs.pair
            and bars.bar_n <= inputs.bar_n
            and bars.bar_n > inputs.bar_n - {{ windows | max }}
    ) as window_rows

),
{%- else -%}
running as (

    select
        *,
        sum(coalesce(log_return, 0)) over w_cum as cum_r,
        sum(coalesce(log_return * log_return, 0)) over w_cum as cum_r2
    from inputs
    window w_cum as (
        partition by pair order by bar_n
        rows between unbounded preceding and current row
    )

),

moments as (

    select
        *,
        {% for w in windows -%}
        cum_r - lag(cum_r, {{ w }}) over w_pair as sr_{{ w }},
        cum_r2 - lag(cum_r2, {{ w }}) over w_pair as sr2_{{ w }},
        {% endfor -%}
        1 as _m
    from running
    window w_pair as (partition by pair order by bar_n)

),

{{ bqx_window_extrema_ctes('moments', windows) }},
{%- endif %}

computed as (

    select
        pair,
        bar_start_at,
        bar_start_at + interval '1 minute' as event_timestamp,
        {% for w in windows -%}
        case
            when bar_n >= {{ w }}
                then sqrt(greatest(
                    ({{ w }} * sr2_{{ w }} - sr_{{ w }} * sr_{{ w }}) / {{ w * (w - 1) }}.0, 0
                )) * 10000
        end as ret_std_{{ w }},
        case
            when bar_n >= {{ w - 1 }}
                then 100 * (max_high_{{ w }} - min_low_{{ w }}) / close_price
        end as range_{{ w }},
        {% endfor -%}
        is_output
    from extrema

)

select
    pair,
    bar_start_at,
    event_timestamp,
    {% for w in windows -%}
    ret_std_{{ w }},
    range_{{ w }}{{ "," if not loop.last }}
    {% endfor %}
from computed
where is_output
