{#
  Expensive data tests scoped to changed rows (README "Incremental builds"). A test whose
  `where` config names __engram_changed_since__ (e.g. "loaded_at > __engram_changed_since__")
  checks, on an incremental `engram build`, only the rows loaded after the previous build:
  engram.build passes that build's loaded_at watermark as var('engram_changed_since').
  Without the var (a plain `dbt build`, the daily Dagster schedule) or on --full-refresh the
  placeholder becomes earliest_timestamp() (DuckDB: timestamp '-infinity'; macros/dialect.sql)
  and the test checks every row. dbt does not
  let a custom macro fill a test's config, so the placeholder is replaced here, in dbt's
  own hook for the `where` config. A scoped unique test can miss a duplicate between an old
  and a new row; the full runs catch it.
#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where') -%}
    {%- if where -%}
        {%- if '__engram_changed_since__' in where -%}
            {%- set since = var('engram_changed_since', none) -%}
            {%- if since and not flags.FULL_REFRESH -%}
                {%- set where = where | replace('__engram_changed_since__', "timestamp '" ~ since ~ "'") -%}
            {%- else -%}
                {%- set where = where | replace('__engram_changed_since__', earliest_timestamp()) -%}
            {%- endif -%}
        {%- endif -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ where }}) dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}
