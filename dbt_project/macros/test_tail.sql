{#- Data tests of a `dbt build` that refreshed the models incrementally look
    only at the rows the refresh may have rewritten, so a refresh does not
    re-test years of unchanged rows. Overrides dbt's get_where_subquery (the
    wrapper of every generic test's `model`); a test's own `where` config
    still applies.

    The tail starts, over all pairs, at the earliest bar `max(horizons)` bars
    before a pair's first bar written by this invocation (batch_id =
    invocation_id in int_candles_numbered): every mart rewrites rows from
    there on at the earliest (labels_forward relabels max(horizons) bars; the
    cross-pair marts start at the earliest new bar).

    Everything is tested by `dbt test`, `dbt build --full-refresh`, a first
    build (every bar is in the batch), tests of staging models, and a build
    whose int_candles_numbered wrote no bar (the marts may then have caught up
    on older bars: no tail to trust). -#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- set conditions = [] -%}
    {%- if where -%}{%- do conditions.append('(' ~ where ~ ')') -%}{%- endif -%}
    {%- set tail = bqx_test_tail_condition(relation) -%}
    {%- if tail -%}{%- do conditions.append(tail) -%}{%- endif -%}
    {%- if conditions -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ conditions | join(' and ') }}) dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}

{% macro bqx_test_tail_condition(relation) -%}
    {%- if flags.WHICH != 'build' or flags.FULL_REFRESH
        or relation.schema not in ['intermediate', 'marts'] -%}
        {{- return('') -}}
    {%- endif -%}
    {%- set bars = api.Relation.create(
        database=relation.database, schema='intermediate', identifier='int_candles_numbered'
    ) -%}
    {%- set condition -%}
        bar_start_at >= coalesce((
            select min(tail_bars.bar_start_at)
            from {{ bars }} as tail_bars
            inner join (
                select pair, min(bar_n) - {{ var('horizons') | max }} as first_n
                from {{ bars }}
                where batch_id = '{{ invocation_id }}'
                group by pair
            ) as firsts
                on tail_bars.pair = firsts.pair
                and tail_bars.bar_n = greatest(firsts.first_n, 0)
        ), cast('-infinity' as timestamp with time zone))
    {%- endset -%}
    {{- return(condition) -}}
{%- endmacro %}
