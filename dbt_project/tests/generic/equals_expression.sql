{#- Rows where `column_name` differs from `expression` (null-safe). -#}
{% test bqx_equals_expression(model, column_name, expression) %}
select {{ column_name }}
from {{ model }}
where {{ column_name }} is distinct from ({{ expression }})
{% endtest %}
