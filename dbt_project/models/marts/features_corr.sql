{#- features.md item 6: 4-category cross-pair correlation. Returns of every
    two pairs that share a currency are aligned on timestamps once (each
    unordered pair once: Pearson is symmetric); windowed sums over the last w
    common timestamps give the Pearson value, attributed to both pairs under
    their own category; a category is the mean (SQL avg) of its non-null
    values. Windowed sums are differences of float64 running sums over each
    link's common timestamps (O(rows) for any window; a window of equal
    returns gives exactly zero variance, so the null rule holds).
    A short tail on PostgreSQL (bqx_per_row_tail) reads no lookback: per
    link, an index walk back from its newest common timestamp fetches the
    rows its windows need (at most the cross_lookback_bars floor), and each
    written row sums its windows directly. -#}
{{ bqx_mart_config(cross=true) }}
{%- set windows = var('corr_windows') %}
{%- set links = bqx_corr_links() %}
{%- set categories = ['base_base', 'quote_quote', 'base_quote', 'quote_base'] %}
{%- set dbl = bqx_double() %}
{%- set cuts = bqx_tail_cuts() %}
{%- set per_row = bqx_per_row_tail(cuts) %}
{%- set w_max = windows | max %}
{%- set window_terms = {'x': 'win.x', 'y': 'win.y', 'xx': 'win.x * win.x', 'yy': 'win.y * win.y', 'xy': 'win.x * win.y'} %}
{%- set corr_cols = [] %}
{%- for w in windows %}{% for c in categories %}{% do corr_cols.append([c, w]) %}{% endfor %}{% endfor %}

with

{% if per_row -%}
{{ bqx_cross_tail_inputs(lookback=0, cuts=cuts) }},
{%- else -%}
{{ bqx_cross_tail_inputs(lookback=var('cross_lookback_bars'), bound=bqx_corr_tail_bound, cuts=cuts) }},
{%- endif %}

{% if links | length > 0 -%}
links as (

    {% for l in links -%}
    select
        {{ loop.index }} as link_id,
        '{{ l.p }}' as pair_p,
        '{{ l.o }}' as pair_o,
        '{{ l.rel_po }}' as category_p,
        '{{ l.rel_op }}' as category_o
    {{ "union all" if not loop.last }}
    {% endfor %}

),

{% if per_row -%}
walked as (

    {#- per link, its newest common timestamps: those written (at or after
        the cut) and the w_max - 1 before them, numbered newest first -#}
    select
        links.link_id,
        link_walk.bar_start_at,
        link_walk.x,
        link_walk.y,
        row_number() over (
            partition by links.link_id order by link_walk.bar_start_at desc
        ) as k
    from links
    cross join lateral (
        select
            p.bar_start_at,
            p.log_return as x,
            o.log_return as y
        from {{ ref('int_candles_numbered') }} as p
        inner join {{ ref('int_candles_numbered') }} as o
            on o.pair = links.pair_o
            and o.bar_start_at = p.bar_start_at
        where p.pair = links.pair_p
            and p.bar_start_at >= ({{ bqx_cross_floor_sql('(select min(bar_start_at) from inputs where is_output)', var('cross_lookback_bars')) | indent(12) }})
            and p.log_return is not null
            and o.log_return is not null
        order by p.bar_start_at desc
        limit {{ w_max - 1 }} + (
            select count(*) from inputs where inputs.pair = links.pair_p and inputs.is_output
        )
    ) as link_walk

),

sums as (

    select
        outs.link_id,
        outs.bar_start_at,
        {% for w in windows -%}
        count(*) filter (where win.k < outs.k + {{ w }}) = {{ w }} as full_{{ w }},
        {% for m, term in window_terms.items() -%}
        sum({{ term }}) filter (where win.k < outs.k + {{ w }}) as s{{ m }}_{{ w }}{{ "," if not (loop.last and w == windows[-1]) }}
        {% endfor -%}
        {% endfor -%}
    from walked as outs
    inner join walked as win
        on outs.link_id = win.link_id
        and win.k >= outs.k
        and win.k < outs.k + {{ w_max }}
    where outs.bar_start_at >= (select min(bar_start_at) from inputs where is_output)
    group by outs.link_id, outs.bar_start_at

),
{%- else -%}
returns as (

    select
        pair,
        bar_start_at,
        log_return as r
    from inputs
    where log_return is not null

),

{#- each link's first pair's returns (materialized), then the other pair's
    joined on (pair, timestamp): left to order the joins itself, DuckDB's
    planner joined all pairs' returns with each other on the timestamp alone
    first -#}
link_p as materialized (

    select
        links.link_id,
        links.pair_o,
        rp.bar_start_at,
        rp.r as x
    from links
    inner join returns as rp on links.pair_p = rp.pair

),

aligned as (

    select
        link_p.link_id,
        link_p.bar_start_at,
        link_p.x,
        ro.r as y
    from link_p
    inner join returns as ro
        on link_p.pair_o = ro.pair
        and link_p.bar_start_at = ro.bar_start_at

),

running as (

    {#- float64 running sums over each link's common timestamps; a window is
        the difference of two of them (O(rows) for any w). -#}
    select
        link_id,
        bar_start_at,
        row_number() over w_link as k,
        sum(x) over w_cum as cx,
        sum(y) over w_cum as cy,
        sum(x * x) over w_cum as cxx,
        sum(y * y) over w_cum as cyy,
        sum(x * y) over w_cum as cxy
    from aligned
    window
        w_link as (partition by link_id order by bar_start_at),
        w_cum as (
            partition by link_id order by bar_start_at
            rows between unbounded preceding and current row
        )

),

sums as (

    select
        link_id,
        bar_start_at,
        {% for w in windows -%}
        k >= {{ w }} as full_{{ w }},
        {% for m in ['x', 'y', 'xx', 'yy', 'xy'] -%}
        case
            when k = {{ w }} then c{{ m }}
            when k > {{ w }} then c{{ m }} - lag(c{{ m }}, {{ w }}) over w_link
        end as s{{ m }}_{{ w }}{{ "," if not (loop.last and w == windows[-1]) }}
        {% endfor -%}
        {% endfor -%}
    from running
    window w_link as (partition by link_id order by bar_start_at)
    {{ bqx_fence() }}

),
{%- endif %}

moments as (

    select
        link_id,
        bar_start_at,
        {% for w in windows -%}
        full_{{ w }},
        cast({{ w }} * sxy_{{ w }} - sx_{{ w }} * sy_{{ w }} as {{ dbl }}) as cov_{{ w }},
        cast({{ w }} * sxx_{{ w }} - sx_{{ w }} * sx_{{ w }} as {{ dbl }}) as varx_{{ w }},
        cast({{ w }} * syy_{{ w }} - sy_{{ w }} * sy_{{ w }} as {{ dbl }}) as vary_{{ w }}{{ "," if not loop.last }}
        {% endfor -%}
    from sums
    {{ bqx_fence() }}

),

pearson as (

    select
        link_id,
        bar_start_at,
        {% for w in windows -%}
        case
            when full_{{ w }} and varx_{{ w }} > 0 and vary_{{ w }} > 0
                then cov_{{ w }} / sqrt(varx_{{ w }} * vary_{{ w }})
        end as corr_{{ w }}{{ "," if not loop.last }}
        {% endfor -%}
    from moments
    where bar_start_at >= (select min(bar_start_at) from inputs where is_output)

),

attributed as (

    select
        links.pair_p as pair,
        links.category_p as category,
        pearson.bar_start_at,
        {% for w in windows -%}
        pearson.corr_{{ w }}{{ "," if not loop.last }}
        {% endfor -%}
    from pearson
    inner join links on pearson.link_id = links.link_id

    union all

    select
        links.pair_o as pair,
        links.category_o as category,
        pearson.bar_start_at,
        {% for w in windows -%}
        pearson.corr_{{ w }}{{ "," if not loop.last }}
        {% endfor -%}
    from pearson
    inner join links on pearson.link_id = links.link_id

),

categories as (

    select
        pair,
        bar_start_at,
        {% for c, w in corr_cols -%}
        avg(case when category = '{{ c }}' then corr_{{ w }} end) as corr_{{ c }}_{{ w }}{{ "," if not loop.last }}
        {% endfor -%}
    from attributed
    group by pair, bar_start_at

)
{%- else -%}
categories as (

    select
        pair,
        bar_start_at,
        {% for c, w in corr_cols -%}
        cast(null as {{ dbl }}) as corr_{{ c }}_{{ w }},
        {% endfor -%}
        1 as _one
    from inputs
    where 1 = 0

)
{%- endif %}

select
    inputs.pair,
    inputs.bar_start_at,
    inputs.bar_start_at + interval '1 minute' as event_timestamp,
    {% for c, w in corr_cols -%}
    categories.corr_{{ c }}_{{ w }}{{ "," if not loop.last }}
    {% endfor %}
from inputs
left join categories
    on inputs.pair = categories.pair
    and inputs.bar_start_at = categories.bar_start_at
where inputs.is_output
