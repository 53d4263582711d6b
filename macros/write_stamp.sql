{#
  The stamp of the rows an incremental SQL model writes now, `written_at`: the clock (UTC,
  to the microsecond) moved just past the newest stamp already in the model's table should
  it be behind, so that stamps only grow and each write's are its own, as the Python
  models' (engram.numeric.incremental.write_stamp). int_pattern_weeks__aggregated and
  int_pattern_context_weeks__aggregated rewrite some (pattern, week) groups and keep the
  rest, every written row stamped: a pattern's rows changed exactly when its (row count,
  oldest stamp, newest stamp) did, which the serving copy's publish reads instead of
  hashing every row to find the patterns to sync (engram.query.serving.SCOPED; ~1.7 s of a
  10M-event refresh's publish for the two tables' 10.7M rows). Rows written before the
  column existed keep a null stamp until a write rewrites them (the models add the column
  with on_schema_change='append_new_columns'); the newest stamp still grows with every
  write. Spark builds the models whole (incremental_materialization()): the clock alone.
#}
{% macro write_stamp_sql(column='written_at') -%}
    {{ return(adapter.dispatch('write_stamp_sql')(column)) }}
{%- endmacro %}

{% macro default__write_stamp_sql(column) -%}
    {%- set now = "timezone('UTC', current_timestamp)" -%}
    {#- (a unit test's `this` is its fixture's name, a string: the clock alone there) -#}
    {%- if is_incremental() and this is not string
        and column in adapter.get_columns_in_relation(this) | map(attribute='name') | list -%}
        greatest(
            {{ now }},
            coalesce(
                (select max({{ column }}) from {{ this }}) + interval 1 microsecond,
                {{ now }}
            )
        )
    {%- else -%}
        {{ now }}
    {%- endif -%}
{%- endmacro %}

{% macro spark__write_stamp_sql(column) -%}
    current_timestamp()
{%- endmacro %}
