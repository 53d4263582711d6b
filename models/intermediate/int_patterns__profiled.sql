-- One row per pattern: when it was first seen, how often and how well it was used, its
-- cluster: all of dim_patterns but what stg_patterns already holds (the text, type,
-- metadata and embedding), which dim_patterns (a view) joins by pattern_id. Stored here
-- without them: 1M patterns' FLOAT[384] copies took 1.5 GB, a third of the warehouse, for
-- about 25k distinct descriptions, and the copy of the texts 47 MiB (issue 18).
-- Events come from stg_usage_events, where a merged-away pattern's events already count
-- toward the kept one (its own usage_count is then 0 and superseded_by names the kept one).

with

patterns as (
    select * from {{ ref('stg_patterns') }}
),

events as (
    select pattern_id, occurred_at, outcome_quality from {{ ref('stg_usage_events') }}
),

clusters as (
    -- the assignment per pattern, the group's label per distinct description
    select
        clustered.pattern_id,
        clustered.cluster_id,
        described.cluster_label,
        clustered.theme_id,
        clustered.paraphrase_group_id
    from {{ ref('int_patterns__clustered') }} as clustered
    inner join {{ ref('int_pattern_texts__described') }} as described
        on described.description_hash = clustered.description_hash
),

merges as (
    select dropped_pattern_id, kept_pattern_id from {{ ref('stg_pattern_supersessions') }}
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
        patterns.pattern_id,
        -- the declared first sighting, or the first use when that is earlier or missing
        least(patterns.first_seen_at, usage.first_used_at) as first_seen_at,
        usage.first_used_at,
        usage.last_used_at,
        coalesce(usage.usage_count, 0) as usage_count,
        usage.success_rate,
        clusters.cluster_id,
        clusters.cluster_label,
        clusters.theme_id,
        clusters.paraphrase_group_id,
        merges.kept_pattern_id as superseded_by
    from patterns
    left join usage on usage.pattern_id = patterns.pattern_id
    left join clusters on clusters.pattern_id = patterns.pattern_id
    left join merges on merges.dropped_pattern_id = patterns.pattern_id
)

select * from final
