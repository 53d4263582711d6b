-- pattern_trends, checked in one pass (it is a view: seven column tests re-derived its 33M
-- gap-filled rows seven times at 10M events): one row per (pattern, week), no key or count
-- null, counts non-negative, both averages within [0, 1]. Each row returned is a
-- violation, with the reason. A grouping, not a window: a second window over the view's
-- own ran out of the build's memory at 10M events, and a hash aggregate spills to disk.
with

cells as (
    select
        pattern_id,
        week,
        count(*) as copies,
        count(*) filter (where usage_count is null) as null_counts,
        min(usage_count) as min_usage_count,
        count(*) filter (where avg_quality not between 0 and 1) as bad_averages,
        count(*) filter (where moving_avg_quality not between 0 and 1) as bad_moving_averages
    from {{ ref('pattern_trends') }}
    group by pattern_id, week
),

checked as (
    select
        pattern_id,
        week,
        case
            when copies > 1 then 'duplicate (pattern_id, week)'
            when pattern_id is null or week is null or null_counts > 0
                then 'pattern_id, week or usage_count is null'
            when min_usage_count < 0 then 'usage_count below 0'
            when bad_averages > 0 then 'avg_quality outside [0, 1]'
            when bad_moving_averages > 0 then 'moving_avg_quality outside [0, 1]'
        end as violation
    from cells
)

select * from checked where violation is not null
