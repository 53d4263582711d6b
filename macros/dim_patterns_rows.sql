{#
  dim_patterns' rows, in two parts: every column but the group's label
  (int_patterns__unlabelled, a view of dim_patterns_rows()), and the label joined by the
  description's hash (dim_patterns, a view of dim_patterns_labelled()).

  Why the label is joined, not stored per pattern: a group's label is its most central
  description, which one new text can move for every member at once. Stored in
  int_patterns__profiled and in the serving copy's table, a refresh adding 10,000 new
  texts at 1M patterns (the generator's 41 groups of ~25k patterns) relabelled more than
  half of them: their profiles were recomputed from all their events and the copy's
  dim_patterns, vectors and all, rewritten (issue 18, `python -m bench --size full`).
  Joined at read time, a relabelled group costs one row of int_pattern_texts__described.
#}

{#
  The rows without the label, optionally for some patterns only: `patterns` is a subquery
  of pattern_ids. A pattern's row comes from its own profile row and its own stg_patterns
  row alone, so the rows of a scoped call are exactly the view's rows for those patterns.
  The description's hash comes last: what the label is joined by.
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
    select pattern_id, description, description_hash, pattern_type, metadata, embedding
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
        profiled.theme_id,
        profiled.paraphrase_group_id,
        profiled.superseded_by,
        patterns.description_hash
    from profiled
    inner join patterns on patterns.pattern_id = profiled.pattern_id
)

select * from final
{% endmacro %}

{#
  dim_patterns: the rows of `unlabelled` (int_patterns__unlabelled or the serving copy's
  table of it) with their group's label from `described` (int_pattern_texts__described).
  A clustered pattern's description is the one it was clustered by (a build refreshes the
  clustering of a changed description); an unclustered pattern has no label.
#}
{% macro dim_patterns_labelled(unlabelled=none, described=none) %}
select
    unlabelled.pattern_id,
    unlabelled.description,
    unlabelled.pattern_type,
    unlabelled.metadata,
    unlabelled.embedding,
    unlabelled.first_seen_at,
    unlabelled.first_used_at,
    unlabelled.last_used_at,
    unlabelled.usage_count,
    unlabelled.success_rate,
    unlabelled.cluster_id,
    labels.cluster_label,
    unlabelled.theme_id,
    unlabelled.paraphrase_group_id,
    unlabelled.superseded_by
from {{ unlabelled or ref('int_patterns__unlabelled') }} as unlabelled
left join {{ described or ref('int_pattern_texts__described') }} as labels
    on labels.description_hash = unlabelled.description_hash
    and unlabelled.cluster_id is not null
{% endmacro %}

{#
  int_patterns__unlabelled's post-hook (DuckDB only): the table macro
  <schema>.int_patterns__unlabelled_for(keys), the view's rows for a list of pattern_ids.
  The serving copy stores the view as a table, and its publish rewrites the patterns
  whose profile or text changed (engram.query.serving.SCOPED) with it: filtering the
  view's output joined all 1M profile rows with stg_patterns' vectors first. Inputs are
  named without the database, as in create_pattern_trends_served (a copied warehouse file
  keeps a macro's text as written).
#}
{% macro create_int_patterns__unlabelled_for() %}
    {%- if target.type == 'duckdb' -%}
        create or replace macro {{ this.schema }}.int_patterns__unlabelled_for(keys) as table
        {{ dim_patterns_rows(
            patterns='(select unnest(keys))',
            profiled=ref('int_patterns__profiled').include(database=False),
            staged=ref('stg_patterns').include(database=False),
        ) }}
    {%- endif -%}
{% endmacro %}

{#
  dim_patterns' post-hook (DuckDB only): the table macro <schema>.dim_patterns_served(),
  the same query over the two tables named without the database, which the serving copy's
  view marts.dim_patterns is (engram.query.serving.SERVED_VIEWS).
#}
{% macro create_dim_patterns_served() %}
    {%- if target.type == 'duckdb' -%}
        create or replace macro {{ this.schema }}.dim_patterns_served() as table
        {{ dim_patterns_labelled(
            unlabelled=ref('int_patterns__unlabelled').include(database=False),
            described=ref('int_pattern_texts__described').include(database=False),
        ) }}
    {%- endif -%}
{% endmacro %}
