{#-
  dbt-duckdb's incremental Python models write each build's new rows to a table
  main.<model>__dbt_tmp<timestamp> before the delete+insert and never drop it, so every
  incremental build left three more tables in the warehouse file (found with
  `python -m bench.storage`). Run as the project's on-run-end hook; on other adapters
  (Spark) it does nothing.
-#}
{% macro drop_python_model_scratch() %}
    {% if execute and target.type == 'duckdb' %}
        {% set found = run_query(
            "select table_catalog, table_schema, table_name from information_schema.tables "
            "where table_type = 'BASE TABLE' and contains(table_name, '__dbt_tmp')"
        ) %}
        {% for row in found.rows %}
            {% do run_query('drop table if exists "' ~ row[0] ~ '"."' ~ row[1] ~ '"."' ~ row[2] ~ '"') %}
        {% endfor %}
    {% endif %}
    select 1
{% endmacro %}
