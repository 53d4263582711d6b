{#
  dim_patterns' query (models/marts/semantic/dim_patterns.sql is this macro and nothing
  else), optionally for some patterns only: `patterns` is a subquery of pattern_ids. A
  pattern's row comes from its own profile row, its own stg_patterns row and its
  description's row of int_pattern_texts__described (the label of its group) alone, so
  the rows of a scoped call are exactly the view's rows for those patterns.

  The label is joined here, not stored in int_patterns__profiled: a group's label is its
  most central description, which one new text can move for every member at once. Stored
  there, a refresh adding 10,000 new texts at 1M patterns (the generator's 41 groups of
  ~25k patterns) relabelled more than half of them, recomputed their profiles from all
  their events, and the serving copy's digests of dim_patterns' input changed for all of
  them, so the copy's dim_patterns was rewritten whole, vectors and all (24.0 s of a 35.1
  s publish; issue 18, `python -m bench --size full`). The copy now updates the label
  column alone where a description's label moved (engram.query.serving.sync_labels).
#}
{% macro dim_patterns_rows(patterns=none, profiled=none, staged=none, described=none) %}

with

profiled as (
    select * from {{ profiled or ref('int_patterns__profiled') }}
    {%- if patterns %}
    where pattern_id in {{ patterns }}
    {%- endif %}
),

patterns as (
    select pattern_id, description, description_hash, pattern_type, metadata, embedding
    from {{ staged or ref('stg_patterns') }}
    {%- if patterns %}
    where pattern_id in {{ patterns }}
    {%- endif %}
),

labels as (
    select description_hash, cluster_label
    from {{ described or ref('int_pattern_texts__described') }}
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
        labels.cluster_label,
        profiled.theme_id,
        profiled.paraphrase_group_id,
        profiled.superseded_by
    from profiled
    inner join patterns on patterns.pattern_id = profiled.pattern_id
    -- a clustered pattern's description is the one it was clustered by (a build refreshes
    -- the clustering of a changed description); an unclustered pattern has no label
    left join labels
        on labels.description_hash = patterns.description_hash
        and profiled.cluster_id is not null
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
            described=ref('int_pattern_texts__described').include(database=False),
        ) }}
    {%- endif -%}
{% endmacro %}
