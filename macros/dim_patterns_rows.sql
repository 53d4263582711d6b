{#
  dim_patterns' query (models/marts/semantic/dim_patterns.sql is this macro and nothing
  else), optionally for some patterns only: `patterns` is a subquery of pattern_ids. A
  pattern's row comes from its own profile row and its own stg_patterns row alone, so the
  rows of a scoped call are exactly the view's rows for those patterns.
#}
{% macro dim_patterns_rows(patterns=none, profiled=none, staged=none) %}

with

profiled as (
    select * from {{ profiled or ref('int_patterns__profiled') }}
    {%- if patterns %}
    where pattern_id in {{ patterns }}
    {%- endif %}
),

patterns as (
    select pattern_id, description, pattern_type, metadata, embedding
    from {{ staged or ref('stg_patterns') }}
    {%- if patterns %}
    where pattern_id in {{ patterns }}
    {%- endif %}
),

final as (
    select
        profiled.pattern_id,
        patterns.description,
        patterns.pattern_type,
        patterns.metadata,
        patterns.embedding,
        profiled.first_seen_at,
        profiled.first_used_at,
        profiled.last_used_at,
        profiled.usage_count,
        profiled.success_rate,
        profiled.cluster_id,
        profiled.cluster_label,
        profiled.theme_id,
        profiled.paraphrase_group_id,
        profiled.superseded_by
    from profiled
    inner join patterns on patterns.pattern_id = profiled.pattern_id
)

select * from final
{% endmacro %}

{#
  dim_patterns' post-hook (DuckDB only): the table macro <schema>.dim_patterns_for(keys),
  the view's rows for a list of pattern_ids. The serving copy's publish rewrites the
  patterns whose profile or text changed (engram.query.serving.SCOPED) with it: filtering
  the view's output joined all 1M profile rows with stg_patterns' vectors first. Inputs
  are named without the database, as in create_pattern_trends_served (a copied warehouse
  file keeps a macro's text as written).
#}
{% macro create_dim_patterns_for() %}
    {%- if target.type == 'duckdb' -%}
        create or replace macro {{ this.schema }}.dim_patterns_for(keys) as table
        {{ dim_patterns_rows(
            patterns='(select unnest(keys))',
            profiled=ref('int_patterns__profiled').include(database=False),
            staged=ref('stg_patterns').include(database=False),
        ) }}
    {%- endif -%}
{% endmacro %}
