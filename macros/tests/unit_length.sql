{# Embedding vectors must have the model's dimension and unit length. #}
{% test unit_length(model, column_name, dim=384, tolerance=0.001) %}
select {{ column_name }} as vector
from {{ model }}
where {{ column_name }} is not null
  and (
    {{ list_length(column_name) }} <> {{ dim }}
    or abs(sqrt({{ self_dot_product(column_name) }}) - 1)
       > {{ tolerance }}
  )
{% endtest %}
