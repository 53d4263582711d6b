-- One row per pattern: when it was first seen, how often and how well it was used, its
-- cluster: all of dim_patterns but what stg_patterns already holds (the text, type,
-- metadata and embedding), which dim_patterns (a view) joins by pattern_id, and the
-- group's label, which dim_patterns joins by description (a new text can move it for
-- every member of its group: macros/dim_patterns_rows.sql). Stored here
-- without them: 1M patterns' FLOAT[384] copies took 1.5 GB, a third of the warehouse, for
-- about 25k distinct descriptions, and the copy of the texts 47 MiB (issue 18).
-- Events come from stg_usage_events, where a merged-away pattern's events already count
-- toward the kept one (its own usage_count is then 0 and superseded_by names the kept one).
-- Incremental (delete+insert on pattern_id, README "Incremental builds"): a refresh
-- recomputes the patterns with a week of events newer than this model's own watermark
-- (macros/own_watermark.sql), from all their events, and the patterns whose other columns
-- (cluster, theme, paraphrase group, merge, first sighting) differ from the stored
-- row or that have none; summing every pattern's 10M events took 2.4-3.0 s of a +1%
-- refresh. A merge or unmerge since that watermark, or no watermark yet, recomputes every
-- row (the pre-hook empties the table).
-- depends_on: {{ ref('int_pattern_weeks__aggregated') }}
{{
    config(
        materialized=incremental_materialization(),
        incremental_strategy='delete+insert',
        unique_key='pattern_id',
        on_schema_change='sync_all_columns',
        pre_hook="{% if is_incremental() and own_watermark_recompute_all() %}delete from {{ this }}{% endif %}",
        post_hook="{{ save_own_watermark(not is_incremental() or own_watermark_recompute_all()) }}",
    )
}}

{%- set scoped = is_incremental() and not own_watermark_recompute_all() %}

with

patterns as (
    select pattern_id, first_seen_at from {{ ref('stg_patterns') }}
),

clusters as (
    -- the assignment per pattern
    select pattern_id, cluster_id, theme_id, paraphrase_group_id
    from {{ ref('int_patterns__clustered') }}
),

merges as (
    select dropped_pattern_id, kept_pattern_id from {{ ref('stg_pattern_supersessions') }}
),

-- every pattern's columns but those from its events
placed as (
    select
        patterns.pattern_id,
        patterns.first_seen_at as declared_first_seen_at,
        clusters.cluster_id,
        clusters.theme_id,
        clusters.paraphrase_group_id,
        merges.kept_pattern_id as superseded_by
    from patterns
    left join clusters on clusters.pattern_id = patterns.pattern_id
    left join merges on merges.dropped_pattern_id = patterns.pattern_id
),
{%- if scoped %}

-- the patterns this refresh recomputes: events loaded since the watermark, or a stored
-- row whose other columns differ (a new cluster, a merge), or none stored
scope as (
    select pattern_id from {{ ref('int_pattern_weeks__aggregated') }}
    where max_loaded_at > {{ own_watermark() }}
    union
    select placed.pattern_id
    from placed
    left join {{ this }} as stored on stored.pattern_id = placed.pattern_id
    where stored.pattern_id is null
        or stored.cluster_id is distinct from placed.cluster_id
        or stored.theme_id is distinct from placed.theme_id
        or stored.paraphrase_group_id is distinct from placed.paraphrase_group_id
        or stored.superseded_by is distinct from placed.superseded_by
        or stored.first_seen_at is distinct from
            least(placed.declared_first_seen_at, stored.first_used_at)
),
{%- endif %}

events as (
    select pattern_id, occurred_at, outcome_quality from {{ ref('stg_usage_events') }}
    {%- if scoped %}
    where pattern_id in (select pattern_id from scope)
    {%- endif %}
),

usage as (
    select
        pattern_id,
        count(*) as usage_count,
        -- an exact sum (macros/exact_decimal.sql): avg() of doubles differs in the last
        -- bits from build to build, and the serving copy then rewrote ~150k unchanged
        -- patterns' rows after each refresh
        cast(
            sum({{ exact_decimal('outcome_quality') }}) / nullif(count(outcome_quality), 0)
            as double
        ) as success_rate,
        min(occurred_at) as first_used_at,
        max(occurred_at) as last_used_at
    from events
    group by pattern_id
),

final as (
    select
        placed.pattern_id,
        -- the declared first sighting, or the first use when that is earlier or missing
        least(placed.declared_first_seen_at, usage.first_used_at) as first_seen_at,
        usage.first_used_at,
        usage.last_used_at,
        coalesce(usage.usage_count, 0) as usage_count,
        usage.success_rate,
        placed.cluster_id,
        placed.theme_id,
        placed.paraphrase_group_id,
        placed.superseded_by
    from placed
    left join usage on usage.pattern_id = placed.pattern_id
    {%- if scoped %}
    where placed.pattern_id in (select pattern_id from scope)
    {%- endif %}
)

select * from final
