{#
  A model's own loaded_at watermark (issue 18): the newest
  int_pattern_weeks__aggregated.max_loaded_at its last run had taken in, kept in the side
  table intermediate.<model>__watermark (processed_through, and recomputed_all: whether that run
  recomputed every row, which macros/changed_rows.sql's recomputed_whole reads to widen
  the model's scoped tests). Written by the model's post-hook, inside its transaction, so
  a run killed before its commit leaves the previous rows and the previous watermark
  together, and the next run takes in what the killed one did not. The build's own
  watermark (engram.build.changed_since) is no substitute: a build killed after
  int_pattern_weeks__aggregated but before the model would have moved it past the rows
  the model never took in. DuckDB only (Spark builds these models as tables).
#}

{#- The side tables live beside int_pattern_weeks__aggregated (the intermediate schema),
    whichever schema the model is in: a table in the marts schema would be served as a
    mart. -#}
{% macro own_watermark_schema() -%}
    {{ return(ref('int_pattern_weeks__aggregated').schema) }}
{%- endmacro %}

{% macro own_watermark_table(suffix='watermark') -%}
    {{ return(adapter.quote(own_watermark_schema()) ~ "." ~ adapter.quote(this.identifier ~ "__" ~ suffix)) }}
{%- endmacro %}

{#- The previous run's watermark as a SQL literal, or none: not incremental, not DuckDB,
    or no side table yet (the first run with this code), nor any of the other side tables
    `also` names (suffixes, as own_watermark_table's) that the model keeps beside it. -#}
{% macro own_watermark(also=[]) -%}
    {%- if not execute or not is_incremental() or target.type != 'duckdb' -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set names = ['watermark'] + also -%}
    {%- set exists_sql -%}
        select count(*) from information_schema.tables
        where table_catalog = '{{ this.database }}' and table_schema = '{{ own_watermark_schema() }}'
            and table_name in (
                {%- for suffix in names %}'{{ this.identifier }}__{{ suffix }}'{{ ', ' if not loop.last }}{% endfor -%}
            )
    {%- endset -%}
    {%- if run_query(exists_sql).columns[0].values()[0] < names | length -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set sql -%}
        select strftime(processed_through, '%Y-%m-%d %H:%M:%S.%f') from {{ own_watermark_table() }}
    {%- endset -%}
    {%- set rows = run_query(sql).columns[0].values() -%}
    {%- if rows | length != 1 or rows[0] is none -%}
        {{ return(none) }}
    {%- endif -%}
    {{ return("timestamp '" ~ rows[0] ~ "'") }}
{%- endmacro %}

{#- The post-hook's statement: this run's watermark (what int_pattern_weeks__aggregated
    holds now, which this run read), and whether it recomputed every row. -#}
{% macro save_own_watermark(recomputed_all) -%}
    {%- if target.type != 'duckdb' -%}
        {{ return('') }}
    {%- endif -%}
    create or replace table {{ own_watermark_table() }} as
    select max(max_loaded_at) as processed_through,
        {{ 'true' if recomputed_all else 'false' }} as recomputed_all
    from {{ ref('int_pattern_weeks__aggregated') }}
{%- endmacro %}

{#- True when a model keeping its own watermark must recompute every row for the reasons
    all such models share: no watermark (first run with this code, or a side table of
    `also` missing), or a merge recorded or undone since it (events then count toward
    another pattern). pattern_trend_summary (a row per pattern from its own weekly sums)
    needs no more; int_pattern_context_weeks__aggregated adds its context map's checks. -#}
{% macro own_watermark_recompute_all(also=[]) -%}
    {%- set since = own_watermark(also=also) -%}
    {%- if since is none -%}
        {{ return(true) }}
    {%- endif -%}
    {%- set sql -%}
        select count(*) from {{ source('raw', 'pattern_supersessions') }}
        where {{ merge_changed_after(since) }}
    {%- endset -%}
    {{ return(run_query(sql).columns[0].values()[0] > 0) }}
{%- endmacro %}
