{#- features.md item 3: ret_std_{w} (bp, ddof 1) and range_{w}. -#}
{{ bqx_mart_config() }}
{%- set windows = var('bqx_windows') %}

with

{{ bqx_tail_inputs(lookback=windows | max) }},

{{ bqx_window_extrema_ctes('inputs', windows) }},

computed as (

    select
        pair,
        bar_start_at,
        bar_start_at + interval '1 minute' as event_timestamp,
        {% for w in windows -%}
        case
            when bar_n >= {{ w }}
                then cast(
                    stddev_samp(cast(log_return as {{ bqx_wsum_type() }})) over (
                        partition by pair order by bar_n
                        rows between {{ w - 1 }} preceding and current row
                    ) as {{ bqx_double() }}
                ) * 10000
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
