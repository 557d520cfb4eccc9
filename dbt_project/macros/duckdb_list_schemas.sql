{#- dbt-duckdb's list_schemas with the database name unquoted: dbt passes it
    quoted ('"warehouse"'), dbt-duckdb compares it as is with the catalog
    name, finds no schema, and every run re-created the warehouse's schemas
    (two statements, BEGIN and COMMIT each, before the first model). -#}
{% macro duckdb__list_schemas(database) -%}
  {% set sql %}
    select schema_name
    from system.information_schema.schemata
    {% if database is not none %}
    where lower(catalog_name) = '{{ database | replace('"', '') | lower }}'
    {% endif %}
  {% endset %}
  {{ return(run_query(sql)) }}
{%- endmacro %}
