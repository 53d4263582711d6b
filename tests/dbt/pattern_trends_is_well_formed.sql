-- pattern_trends, checked in one pass (it is a view: seven column tests re-derived its 33M
-- gap-filled rows seven times at 10M events): one row per (pattern, week), no key or count
-- null, counts non-negative, both averages within [0, 1]. Each row returned is a
-- violation, with the reason.
with

trends as (
    select
        *,
        count(*) over (partition by pattern_id, week) as copies
    from {{ ref('pattern_trends') }}
),

checked as (
    select
        pattern_id,
        week,
        case
            when copies > 1 then 'duplicate (pattern_id, week)'
            when pattern_id is null or week is null or usage_count is null
                then 'pattern_id, week or usage_count is null'
            when usage_count < 0 then 'usage_count below 0'
            when avg_quality not between 0 and 1 then 'avg_quality outside [0, 1]'
            when moving_avg_quality not between 0 and 1
                then 'moving_avg_quality outside [0, 1]'
        end as violation
    from trends
)

select * from checked where violation is not null
