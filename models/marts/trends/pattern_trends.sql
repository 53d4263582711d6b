-- One row per pattern per calendar week (Monday, UTC) from the pattern's first event week to
-- its last, empty weeks filled in. Deterministic: no now()-relative window; the span is the
-- data's own. A view (issue 18): the gap-filled rows are most of its 33M rows at 10M events
-- and took 286 MiB of the warehouse, re-derived from int_pattern_weeks__aggregated (a
-- full read took 15 s at 10M events on a loaded machine); the serving copy stores it as a table, sorted for lookups by pattern
-- (engram.query.serving), so questions read a table. Its column checks run in one pass
-- (tests/dbt/pattern_trends_is_well_formed.sql).
{{ config(materialized='view') }}

with

weekly as (
    select pattern_id, week, n_events, sum_quality
    from {{ ref('int_pattern_weeks__aggregated') }}
),

spans as (
    select pattern_id, min(week) as first_week, max(week) as last_week
    from weekly
    group by pattern_id
),

calendar as (
    select
        spans.pattern_id,
        {{ weekly_dates('spans.first_week', 'spans.last_week') }}
            as week
    from spans
),

filled as (
    select
        calendar.pattern_id,
        calendar.week,
        coalesce(weekly.n_events, 0) as usage_count,
        coalesce(weekly.sum_quality, 0) as sum_quality
    from calendar
    left join weekly
        on weekly.pattern_id = calendar.pattern_id
        and weekly.week = calendar.week
),

-- Weeks are contiguous after filling, so N - 1 preceding rows are the N - 1 preceding
-- calendar weeks (N = var('trend_window_weeks'); pattern_alerts' current quality is this
-- average at a pattern's last week).
windowed as (
    select
        pattern_id,
        week,
        usage_count,
        case when usage_count > 0 then sum_quality / usage_count end as avg_quality,
        sum(sum_quality) over moving_window
            / nullif(sum(usage_count) over moving_window, 0) as moving_avg_quality
    from filled
    window moving_window as (
        partition by pattern_id order by week rows between {{ var('trend_window_weeks') - 1 }} preceding and current row
    )
),

final as (
    select
        pattern_id,
        week,
        usage_count,
        avg_quality,
        moving_avg_quality
    from windowed
)

select * from final
