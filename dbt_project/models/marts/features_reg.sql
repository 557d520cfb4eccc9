{#- features.md item 5: rolling quadratic regression of y = close_idx on
    x = 0..w-1, EXACT. Windowed sums of Y, nY, n^2 Y and Y^2 (Y = close in
    integer price points, n = bar_n) come from exact running sums; x is
    re-centred exactly (x = n - s, s = n - w + 1); the fit uses the discrete
    orthogonal polynomials u = 2x - (w-1) and 3u^2 - (w^2-1), whose
    projections P1Y, P2Y are exact integers; only the final divisions are
    double, then scaled to close_idx units by f = 100 / (10^6 c0). -#}
{{ bqx_mart_config() }}
{%- set windows = var('reg_windows') %}
{%- set exact = bqx_exact_int() %}
{%- set dbl = bqx_double() %}

{#- a one-minute refresh (PostgreSQL): lags looked up per written row -#}
{%- set cuts = bqx_tail_cuts() %}
{%- set per_row = bqx_per_row_tail(cuts) %}

with

{{ bqx_tail_inputs(lookback=0 if per_row else windows | max, cuts=cuts) }},

{{ bqx_base_closes_cte() }},

window_sums as (

    select
        pair,
        bar_n,
        bar_start_at,
        close_points,
        {% for w in windows -%}
        {{ bqx_wsum_from_cum('cum_y', w, per_row) }} as sy_{{ w }},
        {{ bqx_wsum_from_cum('cum_jy', w, per_row) }} as t1_{{ w }},
        {{ bqx_wsum_from_cum('cum_j2y', w, per_row) }} as t2_{{ w }},
        {{ bqx_wsum_from_cum('cum_y2', w, per_row) }} as syy_{{ w }},
        {% endfor -%}
        is_output
    from inputs
    window w_pair as (partition by pair order by bar_n)
    {{ bqx_fence() }}

),

centred as (

    {#- s = bar_n - w + 1; SxY = T1 - s SY; Sx2Y = T2 - 2 s T1 + s^2 SY. -#}
    select
        pair,
        bar_start_at,
        close_points,
        {% for w in windows -%}
        {%- set s = "cast(bar_n - " ~ (w - 1) ~ " as " ~ exact ~ ")" %}
        sy_{{ w }},
        syy_{{ w }},
        t1_{{ w }} - {{ s }} * sy_{{ w }} as sxy_{{ w }},
        t2_{{ w }} - 2 * {{ s }} * t1_{{ w }} + {{ s }} * {{ s }} * sy_{{ w }} as sx2y_{{ w }},
        {% endfor -%}
        is_output
    from window_sums
    where is_output
    {{ bqx_fence() }}

),

projections as (

    select
        pair,
        bar_start_at,
        {% for w in windows -%}
        {%- set m = w - 1 %}
        sy_{{ w }} is not null as ok_{{ w }},
        cast(sy_{{ w }} as {{ dbl }}) as sy_{{ w }},
        cast(2 * sxy_{{ w }} - {{ m }} * sy_{{ w }} as {{ dbl }}) as p1y_{{ w }},
        cast(
            12 * sx2y_{{ w }} - {{ 12 * m }} * sxy_{{ w }}
            + ({{ 3 * m * m - w * w + 1 }}) * sy_{{ w }}
            as {{ dbl }}
        ) as p2y_{{ w }},
        {{ w }} * syy_{{ w }} - sy_{{ w }} * sy_{{ w }} as wsst_{{ w }},
        cast({{ w }} * close_points - sy_{{ w }} as {{ dbl }}) as wdev_{{ w }},
        {% endfor -%}
        1 as _one
    from centred
    {{ bqx_fence() }}

),

coefficients as (

    select
        projections.pair,
        projections.bar_start_at,
        100.0 / (1000000.0 * base_closes.c0) as f,
        {% for w in windows -%}
        {%- set m = w - 1 %}
        {%- set n1 = (w * (w * w - 1)) // 3 %}
        {%- set n2 = (4 * w * (w * w - 1) * (w * w - 4)) // 5 %}
        ok_{{ w }},
        sy_{{ w }} / {{ w }} as g0_{{ w }},
        p1y_{{ w }} / {{ n1 }}.0 as g1_{{ w }},
        p2y_{{ w }} / {{ n2 }}.0 as g2_{{ w }},
        wsst_{{ w }} = 0 as flat_{{ w }},
        cast(wsst_{{ w }} as {{ dbl }}) / {{ w }} as sst_{{ w }},
        wdev_{{ w }} / {{ w }} as dev_{{ w }},
        {% endfor -%}
        1 as _one
    from projections
    left join base_closes on projections.pair = base_closes.pair
    {{ bqx_fence() }}

),

fits as (

    select
        pair,
        bar_start_at,
        f,
        {% for w in windows -%}
        {%- set m = w - 1 %}
        {%- set c2 = 3 * m * m - w * w + 1 %}
        ok_{{ w }},
        flat_{{ w }},
        sst_{{ w }},
        12 * g2_{{ w }} as a_{{ w }},
        2 * g1_{{ w }} - {{ 12 * m }} * g2_{{ w }} as b_{{ w }},
        g0_{{ w }} - {{ m }} * g1_{{ w }} + ({{ c2 }}) * g2_{{ w }} as k_{{ w }},
        2 * g1_{{ w }} as slope_{{ w }},
        dev_{{ w }} - {{ m }} * g1_{{ w }} - ({{ c2 }}) * g2_{{ w }} as resid_{{ w }},
        case
            when flat_{{ w }} then 0
            else greatest(
                sst_{{ w }}
                - g1_{{ w }} * g1_{{ w }} * {{ (w * (w * w - 1)) // 3 }}.0
                - g2_{{ w }} * g2_{{ w }} * {{ (4 * w * (w * w - 1) * (w * w - 4)) // 5 }}.0,
                0
            )
        end as sse_{{ w }},
        {% endfor -%}
        1 as _one
    from coefficients
    {{ bqx_fence() }}

)

select
    pair,
    bar_start_at,
    bar_start_at + interval '1 minute' as event_timestamp,
    {% for w in windows -%}
    {%- set m = w - 1 %}
    case when ok_{{ w }} then a_{{ w }} * f end as reg_a_{{ w }},
    case when ok_{{ w }} then b_{{ w }} * f end as reg_b_{{ w }},
    case when ok_{{ w }} then k_{{ w }} * f end as reg_k_{{ w }},
    case
        when ok_{{ w }} and flat_{{ w }} then 0
        when ok_{{ w }} then 1 - sse_{{ w }} / sst_{{ w }}
    end as reg_r2_{{ w }},
    case when ok_{{ w }} then sqrt(sse_{{ w }} / {{ w }}) * f end as reg_rmse_{{ w }},
    case when ok_{{ w }} then resid_{{ w }} * f end as reg_resid_{{ w }},
    case when ok_{{ w }} then a_{{ w }} * f * {{ m * m }} end as reg_quad_{{ w }},
    case when ok_{{ w }} then b_{{ w }} * f * {{ m }} end as reg_lin_{{ w }},
    case when ok_{{ w }} then slope_{{ w }} * f end as reg_slope_{{ w }}{{ "," if not loop.last }}
    {% endfor %}
from fits
