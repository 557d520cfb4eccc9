{#- One row per (pair, bar): the bar's row number within its pair (bar_n,
    from 0), one-bar log return, gap, and exact running sums of the integer
    price points that the windowed families difference (features.md items 4
    and 5). Incremental: a pair is recomputed from its first new or changed
    bar (ingested_at after the last one seen), continuing from the last
    unchanged row. -#}
{{ config(
    unique_key=['pair', 'bar_start_at'],
    incremental_strategy='delete+insert',
    indexes=bqx_indexes([
        {'columns': ['pair', 'bar_start_at'], 'unique': true},
        {'columns': ['pair', 'bar_n'], 'unique': true},
        {'columns': ['pair', 'ingested_at']},
        {'columns': ['batch_id']},
        {'columns': ['bar_start_at']},
    ]),
    post_hook=["{{ bqx_store_tail_cuts() }}"],
) }}

{%- set exact = bqx_exact_int() %}

with

{% if is_incremental() %}
{#- Per pair: the first stored bar that is new or changed since this model last
    read the pair (ingested_at after the newest one it holds) and the last bar
    it keeps before it (the anchor its running sums continue from). Read with
    run_query (bqx_changed_bars_sql); literals below. -#}
{%- set starts = [] -%}
{%- if execute -%}
{%- set sql = bqx_changed_bars_sql(ref('stg_oanda__candles')) -%}
{%- set starts = run_query(sql).rows -%}
{%- endif %}

anchors as (

    select kept.*
    from {{ this }} as kept
    where
        {% for row in starts if row[2] is not none -%}
        (kept.pair = '{{ row[0] }}' and kept.bar_start_at = {{ bqx_ts_literal(row[2]) }})
        {{- " or" if not loop.last }}
        {% else -%}
        false
        {%- endfor %}

),

fresh as (

    select bars.*
    from {{ ref('stg_oanda__candles') }} as bars
    where
        {% for row in starts -%}
        (bars.pair = '{{ row[0] }}' and bars.bar_start_at >= {{ bqx_ts_literal(row[1]) }})
        {{- " or" if not loop.last }}
        {% else -%}
        false
        {%- endfor %}

),

{% else %}

anchors as (

    select * from (select 1 as _none) as nothing where 1 = 0

),

fresh as (

    select * from {{ ref('stg_oanda__candles') }}

),

{% endif %}

sequenced as (

    select
        fresh.*,
        row_number() over w_pair - 1 as seq,
        lag(fresh.close_price) over w_pair as lag_close_price,
        lag(fresh.bar_start_at) over w_pair as lag_bar_start_at
    from fresh
    window w_pair as (partition by fresh.pair order by fresh.bar_start_at)

),

continued as (

    select
        s.pair,
        s.bar_start_at,
        {% if is_incremental() %}
        coalesce(a.bar_n + 1, 0) + s.seq as bar_n,
        coalesce(s.lag_close_price, a.close_price) as prev_close_price,
        coalesce(s.lag_bar_start_at, a.bar_start_at) as prev_bar_start_at,
        {% else %}
        s.seq as bar_n,
        s.lag_close_price as prev_close_price,
        s.lag_bar_start_at as prev_bar_start_at,
        {% endif %}
        s.open_price,
        s.high_price,
        s.low_price,
        s.close_price,
        s.high_points,
        s.low_points,
        s.close_points,
        s.volume,
        s.ingested_at
        {%- if is_incremental() %},
        a.cum_y as a_cum_y,
        a.cum_jy as a_cum_jy,
        a.cum_j2y as a_cum_j2y,
        a.cum_y2 as a_cum_y2,
        a.cum_v as a_cum_v,
        a.cum_tpv3 as a_cum_tpv3
        {%- endif %}
    from sequenced as s
    {% if is_incremental() %}
    left join anchors as a on s.pair = a.pair
    {% endif %}

),

terms as (

    select
        *,
        cast(close_points as {{ exact }}) as y_term,
        cast(bar_n as {{ exact }}) * close_points as jy_term,
        cast(bar_n as {{ exact }}) * bar_n * close_points as j2y_term,
        cast(close_points as {{ exact }}) * close_points as y2_term,
        cast(volume as {{ exact }}) as v_term,
        cast(high_points + low_points + close_points as {{ exact }}) * volume as tpv3_term
    from continued

),

final as (

    select
        pair,
        bar_n,
        bar_start_at,
        open_price,
        high_price,
        low_price,
        close_price,
        close_points,
        volume,
        ln(close_price / prev_close_price) as log_return,
        {{ bqx_minutes_between('prev_bar_start_at', 'bar_start_at') }} - 1 as gap_minutes,
        {% for name in ['y', 'jy', 'j2y', 'y2', 'v', 'tpv3'] -%}
        {%- if is_incremental() -%}coalesce(a_cum_{{ name }}, 0) + {% endif -%}
        sum({{ name }}_term) over (
            partition by pair order by bar_n rows between unbounded preceding and current row
        ) as cum_{{ name }},
        {% endfor -%}
        ingested_at,
        '{{ invocation_id }}' as batch_id
    from terms

)

select * from final
