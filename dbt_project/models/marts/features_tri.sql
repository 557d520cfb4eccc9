{#- features.md item 8: triangulation error in log space, in basis points.
    For P = A/C and each third currency B with both legs in the universe:
    tri_err_B = 1e4 (ln c_P - (+-ln leg1 +- ln leg2)), counted at t only where
    P and both legs have a bar at exactly t. tri_z over the 180 earlier
    non-null tri_err_mean values of the pair. -#}
{{ bqx_mart_config() }}
{%- set zw = var('tri_z_window') %}
{%- set triangles = bqx_triangles() %}
{%- set dbl = bqx_double() %}

with

{{ bqx_cross_tail_inputs(lookback=var('cross_lookback_bars'), bound=bqx_tri_tail_bound) }},

{% if triangles | length > 0 -%}
triangles as (

    {% for t in triangles -%}
    select
        '{{ t.pair }}' as pair,
        '{{ t.leg1 }}' as leg1,
        cast({{ t.s1 }} as {{ dbl }}) as sign1,
        '{{ t.leg2 }}' as leg2,
        cast({{ t.s2 }} as {{ dbl }}) as sign2
    {{ "union all" if not loop.last }}
    {% endfor %}

),

log_closes as (

    select
        pair,
        bar_start_at,
        ln(close_price) as log_close
    from inputs

),

errors as (

    select
        p.pair,
        p.bar_start_at,
        10000 * (p.log_close - (triangles.sign1 * l1.log_close + triangles.sign2 * l2.log_close)) as tri_err
    from triangles
    inner join log_closes as p on triangles.pair = p.pair
    inner join log_closes as l1
        on triangles.leg1 = l1.pair
        and p.bar_start_at = l1.bar_start_at
    inner join log_closes as l2
        on triangles.leg2 = l2.pair
        and p.bar_start_at = l2.bar_start_at

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
