{#- The incremental materialization on DuckDB: dbt-duckdb's, plus the Parquet
    export of the marts (meta bqx_export_parquet), and a shorter path for the
    tail of a mart whose cuts int_candles_numbered stored in this invocation
    (bqx_store_tail_cuts). That path knows before it writes which rows the
    model rewrites (per pair from write_at on; a cross-pair mart: every pair
    from the earliest write_at on) and which days they fall in, so one
    statement deletes those rows by range, inserts the model's rows straight
    from its query, and rewrites the days' Parquet files: no temp table, no
    delete joined on the unique key, no lookups of columns, temp table or
    days (9-11 statements per mart before, 3 now, plus BEGIN and COMMIT).
    Everything else (first build, --full-refresh, a mart run without
    int_candles_numbered or behind it, int_candles_numbered itself, Python
    models, on_schema_change other than ignore) goes through dbt-duckdb's
    materialization unchanged. PostgreSQL keeps dbt's own. -#}
{% materialization incremental, adapter="duckdb", supported_languages=['sql', 'python'] -%}
{%- set export = (config.get('meta') or {}).get('bqx_export_parquet', false) -%}
{%- set plan = bqx_tail_plan(export) -%}
{%- if plan is none -%}
    {%- set result = dbt.materialization_incremental_duckdb() -%}
    {%- if export -%}{%- do bqx_export_parquet() -%}{%- endif -%}
    {{ return(result) }}
{%- endif -%}

{%- set target_relation = this.incorporate(type='table') -%}
{{ run_hooks(pre_hooks, inside_transaction=False) }}
{{ run_hooks(pre_hooks, inside_transaction=True) }}
{%- call statement('main') -%}
{{ bqx_tail_replace_sql(target_relation, plan, compiled_code) }}
{%- endcall -%}
{%- do apply_grants(target_relation, config.get('grants'), should_revoke=false) -%}
{%- do persist_docs(target_relation, model) -%}
{{ run_hooks(post_hooks, inside_transaction=True) }}
{%- do adapter.commit() -%}
{{ run_hooks(post_hooks, inside_transaction=False) }}
{{ return({'relations': [target_relation]}) }}
{%- endmaterialization %}

{#- The stored tail of this mart for this invocation, or none (dbt-duckdb's
    path): {'rows': [(pair, write_at)], 'cross': bool, 'days': [...],
    'files': Parquet files in the mart's folder (when `export`)}. -#}
{% macro bqx_tail_plan(export) -%}
{%- set meta = config.get('meta') or {} -%}
{%- if not (execute and meta.get('bqx_tail_cuts') and model.language == 'sql'
    and config.get('on_schema_change', 'ignore') in (none, 'ignore') and is_incremental()) -%}
    {{ return(none) }}
{%- endif -%}
{%- set found = run_query(
    "select pair, write_at, days"
    ~ ((", (select count(*) from glob('" ~ bqx_marts_folder() ~ "/*.parquet'))") if export else ", 0")
    ~ " from " ~ bqx_tail_cuts_relation()
    ~ " where invocation_id = '" ~ invocation_id ~ "' and model = '" ~ this.identifier ~ "'"
    ~ " order by pair nulls first"
).rows -%}
{%- if found | length == 0 or found[0][0] is not none -%}
    {{ return(none) }}
{%- endif -%}
{{ return({
    'rows': found[1:],
    'cross': meta.get('bqx_tail_cross', false),
    'days': (found[0][2] or '').split(',') | reject('equalto', '') | list,
    'files': found[0][3],
    'export': export,
}) }}
{%- endmacro %}

{#- Replace the mart's tail: delete the rows the model rewrites, insert its
    rows (by column name), write the Parquet files of the days. With nothing
    to write, a statement that writes nothing. -#}
{% macro bqx_tail_replace_sql(relation, plan, sql) -%}
{%- if not plan.rows -%}
select 0 as rows_written
{%- else -%}
{%- set first_at = plan.rows | map(attribute=1) | min -%}
delete from {{ relation }}
where bar_start_at >= {{ bqx_ts_literal(first_at) }}
{%- if not plan.cross %}
    and (
        {% for row in plan.rows -%}
        (pair = '{{ row[0] }}' and bar_start_at >= {{ bqx_ts_literal(row[1]) }}){{ " or" if not loop.last }}
        {% endfor %}
    )
{%- endif %};
insert into {{ relation }} by name
select * from (
{{ sql }}
) as bqx_tail;
{%- if plan.export %}
{{ bqx_export_days_sql(plan.days, plan.files) }}
{%- endif %}
{%- endif -%}
{%- endmacro %}
