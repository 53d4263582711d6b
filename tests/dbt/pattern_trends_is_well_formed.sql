-- pattern_trends, checked in one pass (it is a view: seven column tests re-derived its 33M
-- gap-filled rows seven times at 10M events): one row per (pattern, week) from its first
-- week to its last, no key or count null, counts non-negative, both averages within
-- [0, 1]. Each row returned is a violation, with the reason. Grouped per pattern (1M
-- groups), not per row: a second window, or a grouping by (pattern, week), over the view's
-- 33M rows ran out of the build's 3 GB at 10M events. A duplicate week shows as more rows
-- than the pattern's weeks. On an incremental `engram build` it checks only the patterns
-- whose weekly sums that build recomputed (changed_patterns(), macros/changed_rows.sql),
-- from the view's own query scoped to them (macros/pattern_trends_rows.sql); a plain
-- `dbt build`, the daily schedule and --full-refresh check every pattern.
-- depends_on: {{ ref('pattern_trends') }}
{%- set changed = changed_patterns() %}
with

patterns as (
    select
        pattern_id,
        count(*) as n_rows,
        {{ weeks_between('min(week)', 'max(week)') }} + 1 as n_weeks,
        count(*) filter (where week is null or usage_count is null) as null_keys,
        min(usage_count) as min_usage_count,
        count(*) filter (where avg_quality not between 0 and 1) as bad_averages,
        count(*) filter (where moving_avg_quality not between 0 and 1) as bad_moving_averages
    from {% if changed %}({{ pattern_trends_rows(changed) }}) as scoped{% else %}{{ ref('pattern_trends') }}{% endif %}
    group by pattern_id
),

checked as (
    select
        pattern_id,
        case
            when pattern_id is null or null_keys > 0
                then 'pattern_id, week or usage_count is null'
            when n_rows <> n_weeks then 'duplicate or missing (pattern_id, week)'
            when min_usage_count < 0 then 'usage_count below 0'
            when bad_averages > 0 then 'avg_quality outside [0, 1]'
            when bad_moving_averages > 0 then 'moving_avg_quality outside [0, 1]'
        end as violation
    from patterns
)

select * from checked where violation is not null
