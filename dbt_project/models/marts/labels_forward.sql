{#- Targets of features.md: fwd_ret_{h}, target_bqx{w}_h{h}, the naive
    baselines known_bqx{w}_h{h} (h < w) and fwd_span_minutes_{h}. Rows change
    when future bars arrive, so a refresh rewrites the last max(h) rows too. -#}
{{ bqx_mart_config(relabel=var('horizons') | max) }}
{%- set horizons = var('horizons') %}
{%- set twindows = var('target_windows') %}

with

{{ bqx_tail_inputs(lookback=twindows | max) }},

shifted as (

    select
        pair,
        bar_n,
        bar_start_at,
        close_price,
        {% for h in horizons -%}
        lead(close_price, {{ h }}) over w_pair as close_fwd_{{ h }},
        lead(bar_start_at, {{ h }}) over w_pair as bar_start_fwd_{{ h }},
        {% for w in twindows -%}
        {%- if h < w %}
        lag(close_price, {{ w - h }}) over w_pair as close_base_{{ w }}_{{ h }},
        {%- elif h == w %}
        close_price as close_base_{{ w }}_{{ h }},
        {%- else %}
        lead(close_price, {{ h - w }}) over w_pair as close_base_{{ w }}_{{ h }},
        {%- endif %}
        {% endfor -%}
        {% endfor -%}
        is_output
    from inputs
    window w_pair as (partition by pair order by bar_n)

)

select
    pair,
    bar_start_at,
    bar_start_at + interval '1 minute' as event_timestamp,
    {% for h in horizons -%}
    100 * (close_fwd_{{ h }} - close_price) / close_price as fwd_ret_{{ h }},
    {% for w in twindows -%}
    case
        when bar_n + {{ h - w }} >= 0
            then 100 * (close_fwd_{{ h }} - close_base_{{ w }}_{{ h }}) / close_base_{{ w }}_{{ h }}
    end as target_bqx{{ w }}_h{{ h }},
    {% if h < w -%}
    case
        when bar_n + {{ h - w }} >= 0
            then 100 * (close_price - close_base_{{ w }}_{{ h }}) / close_base_{{ w }}_{{ h }}
    end as known_bqx{{ w }}_h{{ h }},
    {% endif -%}
    {% endfor -%}
    {{ bqx_minutes_between('bar_start_at', 'bar_start_fwd_' ~ h) }} as fwd_span_minutes_{{ h }}{{ "," if not loop.last }}
    {% endfor %}
from shifted
where is_output
