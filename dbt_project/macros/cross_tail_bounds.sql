{#- Lookback bounds of the cross-pair marts for an incremental run
    (bqx_cross_tail_inputs(bound=...)). Each returns the SQL of one
    timestamp: the earliest row, between t_floor and t_cut, that a window of
    the mart ending at or after t_cut reaches. The search walks back from
    t_cut and stops after a window's worth of rows (LIMIT), so on PostgreSQL
    it is index walks of (pair, bar_start_at), not a scan of the day. -#}

{#- corr: per link (p, o), the max(corr_windows) - 1 latest timestamps before
    t_cut at which both pairs have a return (the rows a window ending at or
    after t_cut can hold before t_cut). -#}
{% macro bqx_corr_tail_bound(t_cut, t_floor) -%}
    {{ return(adapter.dispatch('bqx_corr_tail_bound', 'bqx')(t_cut, t_floor)) }}
{%- endmacro %}

{#- DuckDB (no indexes; the LATERAL walks with a correlated EXISTS took 0.15 s
    for a day's tail): the rows between t_floor and t_cut read once, one row
    per timestamp with which pairs have a return, then ranked per link. -#}
{% macro duckdb__bqx_corr_tail_bound(t_cut, t_floor) -%}
{%- set links = bqx_corr_links() -%}
{%- if not links -%}
select cast(null as timestamp with time zone)
{%- else -%}
{%- set linked = [] -%}
{%- for l in links -%}
{%- for p in [l.p, l.o] if p not in linked -%}{%- do linked.append(p) -%}{%- endfor -%}
{%- endfor -%}
with wide as (
    select
        bar_start_at,
        array[
            {% for p in linked -%}
            bool_or(pair = '{{ p }}' and log_return is not null){{ "," if not loop.last }}
            {% endfor -%}
        ] as has_return
    from {{ ref('int_candles_numbered') }}
    where bar_start_at < {{ bqx_ts_literal(t_cut) }}
        and bar_start_at >= {{ bqx_ts_literal(t_floor) }}
    group by bar_start_at
),

links (link_id, i_p, i_o) as (
    values
    {% for l in links -%}
    ({{ loop.index }}, {{ linked.index(l.p) + 1 }}, {{ linked.index(l.o) + 1 }}){{ "," if not loop.last }}
    {% endfor -%}
),

ranked as (
    select
        wide.bar_start_at,
        row_number() over (partition by links.link_id order by wide.bar_start_at desc) as k
    from wide
    cross join links
    where wide.has_return[links.i_p] and wide.has_return[links.i_o]
)

select min(bar_start_at) from ranked where k <= {{ [var('corr_windows') | max - 1, 1] | max }}
{%- endif -%}
{%- endmacro %}

{% macro default__bqx_corr_tail_bound(t_cut, t_floor) -%}
{%- set bars = ref('int_candles_numbered') -%}
{%- set links = bqx_corr_links() -%}
{%- set w = var('corr_windows') | max -%}
{%- if not links -%}
select cast(null as timestamp with time zone)
{%- else -%}
{%- set both_returns -%}
p.log_return is not null
        and exists (
            select 1
            from {{ bars }} as o
            where o.pair = links.pair_o
                and o.bar_start_at = p.bar_start_at
                and o.log_return is not null
        )
{%- endset %}
select min(common.bar_start_at)
from (values
    {% for l in links -%}
    ('{{ l.p }}', '{{ l.o }}'){{ "," if not loop.last }}
    {% endfor -%}
) as links (pair_p, pair_o)
cross join lateral {{ bqx_walk_back('links.pair_p', t_cut, t_floor, [w - 1, 1] | max, both_returns) }} as common
{%- endif -%}
{%- endmacro %}

{#- tri: per pair P with a triangle, the tri_z_window latest timestamps before
    t_cut at which P and both legs of one of its triangles have a bar (the
    earlier tri_err_mean values a z-score at or after t_cut uses). PostgreSQL
    walks back per pair; DuckDB (no indexes, and a LATERAL walk with a
    correlated EXISTS took 1.5 s for a day's tail) reads the rows between
    t_floor and t_cut once, one row per timestamp, and ranks them. -#}
{% macro bqx_tri_tail_bound(t_cut, t_floor) -%}
    {{ return(adapter.dispatch('bqx_tri_tail_bound', 'bqx')(t_cut, t_floor)) }}
{%- endmacro %}

{% macro duckdb__bqx_tri_tail_bound(t_cut, t_floor) -%}
{%- set triangles = bqx_triangles() -%}
{%- if not triangles -%}
select cast(null as timestamp with time zone)
{%- else -%}
{%- set tri_pairs = bqx_triangle_pairs() -%}
with wide as (
    {#- per timestamp, which pairs have a bar (as in features_tri) -#}
    select
        bar_start_at,
        array[
            {% for p in tri_pairs -%}
            bool_or(pair = '{{ p }}'){{ "," if not loop.last }}
            {% endfor -%}
        ] as has_bar
    from {{ ref('int_candles_numbered') }}
    where bar_start_at < {{ bqx_ts_literal(t_cut) }}
        and bar_start_at >= {{ bqx_ts_literal(t_floor) }}
    group by bar_start_at
),

triangles (pair, i_pair, i_leg1, i_leg2) as (
    values
    {% for t in triangles -%}
    ('{{ t.pair }}', {{ tri_pairs.index(t.pair) + 1 }}, {{ tri_pairs.index(t.leg1) + 1 }}, {{ tri_pairs.index(t.leg2) + 1 }}){{ "," if not loop.last }}
    {% endfor -%}
),

complete as (
    select distinct triangles.pair, wide.bar_start_at
    from wide
    cross join triangles
    where wide.has_bar[triangles.i_pair]
        and wide.has_bar[triangles.i_leg1]
        and wide.has_bar[triangles.i_leg2]
),

ranked as (
    select
        bar_start_at,
        row_number() over (partition by pair order by bar_start_at desc) as k
    from complete
)

select min(bar_start_at) from ranked where k <= {{ var('tri_z_window') }}
{%- endif -%}
{%- endmacro %}

{% macro default__bqx_tri_tail_bound(t_cut, t_floor) -%}
{%- set bars = ref('int_candles_numbered') -%}
{%- set triangles = bqx_triangles() -%}
{%- if not triangles -%}
select cast(null as timestamp with time zone)
{%- else -%}
{%- set triangle_complete -%}
exists (
            select 1
            from triangles
            inner join {{ bars }} as l1
                on l1.pair = triangles.leg1 and l1.bar_start_at = p.bar_start_at
            inner join {{ bars }} as l2
                on l2.pair = triangles.leg2 and l2.bar_start_at = p.bar_start_at
            where triangles.pair = p.pair
        )
{%- endset %}
with triangles (pair, leg1, leg2) as (
    values
    {% for t in triangles -%}
    ('{{ t.pair }}', '{{ t.leg1 }}', '{{ t.leg2 }}'){{ "," if not loop.last }}
    {% endfor -%}
)

select min(complete.bar_start_at)
from (select distinct pair from triangles) as tri_pairs
cross join lateral {{ bqx_walk_back('tri_pairs.pair', t_cut, t_floor, var('tri_z_window'), triangle_complete) }} as complete
{%- endif -%}
{%- endmacro %}

{#- The newest `n` bars of a pair (`pair_expr`) before t_cut, from t_floor on,
    that meet `condition` (SQL over alias p), newest first: a LATERAL body. -#}
{% macro bqx_walk_back(pair_expr, t_cut, t_floor, n, condition) -%}
(
    select p.bar_start_at
    from {{ ref('int_candles_numbered') }} as p
    where p.pair = {{ pair_expr }}
        and p.bar_start_at < {{ bqx_ts_literal(t_cut) }}
        and p.bar_start_at >= {{ bqx_ts_literal(t_floor) }}
        and {{ condition }}
    order by p.bar_start_at desc
    limit {{ n }}
)
{%- endmacro %}
