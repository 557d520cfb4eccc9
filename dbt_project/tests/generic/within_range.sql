{#- Range test: non-null values of the column lie in [min_value - tolerance,
    max_value + tolerance]. -#}
{% test bqx_within_range(model, column_name, min_value, max_value, tolerance=0) %}
select {{ column_name }}
from {{ model }}
where {{ column_name }} < {{ min_value }} - {{ tolerance }}
    or {{ column_name }} > {{ max_value }} + {{ tolerance }}
{% endtest %}
