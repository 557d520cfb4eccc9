{#- features.md item 8: triangulation error in log space, in basis points.
    For P = A/C and each third currency B with both legs in the universe:
    tri_err_B = 1e4 (ln c_P - (+-ln leg1 +- ln leg2)), counted at t only where
    P and both legs have a bar at exactly t. tri_z over the 180 earlier
    non-null tri_err_mean values of the pair. -#}
{{ bqx_mart_config(cross=true) }}
{%- set zw = var('tri_z_window') %}
{%- set triangles = bqx_triangles() %}
{%- set tri_pairs = bqx_triangle_pairs() %}
{%- set dbl = bqx_double() %}

with

{{ bqx_cross_tail_inputs(lookback=var('cross_lookback_bars'), bound=bqx_tri_tail_bound) }},

{% if triangles | length > 0 -%}
log_closes as (

    select
        pair,
        bar_start_at,
        ln(close_price) as log_close
    from inputs

),

{#- one row per timestamp with the log closes of every pair of a triangle
    (an array, in tri_pairs order), and each triangle reads its three
    entries: no join of bars with bars (left to order such joins itself,
    DuckDB's planner joined the legs' bars with each other on the timestamp
    alone first, every pair with every pair), and one query block whatever
    the number of triangles -#}
wide as (

    select
        bar_start_at,
        array[
            {% for p in tri_pairs -%}
            max(case when pair = '{{ p }}' then log_close end){{ "," if not loop.last }}
            {% endfor -%}
        ] as lc
    from log_closes
    group by bar_start_at

),

triangles (pair, i_pair, i_leg1, sign1, i_leg2, sign2) as (

    values
    {% for t in triangles -%}
    ('{{ t.pair }}', {{ tri_pairs.index(t.pair) + 1 }}, {{ tri_pairs.index(t.leg1) + 1 }}, {{ t.s1 }}, {{ tri_pairs.index(t.leg2) + 1 }}, {{ t.s2 }}){{ "," if not loop.last }}
    {% endfor %}

),

errors as (

    select
        triangles.pair,
        wide.bar_start_at,
        10000 * (wide.lc[triangles.i_pair] - (
            cast(triangles.sign1 as {{ dbl }}) * wide.lc[triangles.i_leg1]
            + cast(triangles.sign2 as {{ dbl }}) * wide.lc[triangles.i_leg2]
        )) as tri_err
    from wide
    cross join triangles
    where wide.lc[triangles.i_pair] is not null
        and wide.lc[triangles.i_leg1] is not null
        and wide.lc[triangles.i_leg2] is not null

),

per_bar as (

    select
        pair,
        bar_start_at,
        avg(tri_err) as tri_err_mean,
        max(abs(tri_err)) as tri_err_absmax
    from errors
    group by pair, bar_start_at

),

scored as (

    select
        pair,
        bar_start_at,
        tri_err_mean,
        tri_err_absmax,
        count(*) over w_prev as n_prev,
        cast(avg(cast(tri_err_mean as {{ bqx_wsum_type() }})) over w_prev as {{ dbl }}) as mean_prev,
        cast(stddev_samp(cast(tri_err_mean as {{ bqx_wsum_type() }})) over w_prev as {{ dbl }}) as std_prev
    from per_bar
    window w_prev as (
        partition by pair order by bar_start_at
        rows between {{ zw }} preceding and 1 preceding
    )

)
{%- else -%}
scored as (

    select
        pair,
        bar_start_at,
        cast(null as {{ dbl }}) as tri_err_mean,
        cast(null as {{ dbl }}) as tri_err_absmax,
        0 as n_prev,
        cast(null as {{ dbl }}) as mean_prev,
        cast(null as {{ dbl }}) as std_prev
    from inputs
    where 1 = 0

)
{%- endif %}

select
    inputs.pair,
    inputs.bar_start_at,
    inputs.bar_start_at + interval '1 minute' as event_timestamp,
    scored.tri_err_mean,
    scored.tri_err_absmax,
    case
        when scored.n_prev = {{ zw }} and scored.std_prev > 0
            then (scored.tri_err_mean - scored.mean_prev) / scored.std_prev
    end as tri_z_{{ zw }}
from inputs
left join scored
    on inputs.pair = scored.pair
    and inputs.bar_start_at = scored.bar_start_at
where inputs.is_output
