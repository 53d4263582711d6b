-- A posterior mean lies between the cell's raw mean and its prior mean, and inside its
-- credible interval; n_events add up to the events of known patterns (their usage_count).
-- Shown in Dagster as an asset check of pattern_predictions (the test reads several models).
-- On an incremental build the per-row checks read only the rows it rewrote
-- (macros/changed_rows.sql, refreshed_rows()); the event total is always whole.
{{ config(meta={'dagster': {'ref': {'name': 'pattern_predictions'}}}) }}
with

predictions as (
    select * from {{ ref('pattern_predictions') }}
),

rewritten as (
    select * from predictions where {{ refreshed_rows(ref('pattern_predictions')) }}
),

outside as (
    select pattern_id, context_cluster_id, 'not between data and prior' as problem
    from rewritten
    where predicted_success < least(mean_quality, pattern_mean_shrunk) - 1e-9
       or predicted_success > greatest(mean_quality, pattern_mean_shrunk) + 1e-9
    union all
    select pattern_id, context_cluster_id, 'outside its interval' as problem
    from rewritten
    where predicted_success < ci_low - 1e-9 or predicted_success > ci_high + 1e-9
),

event_totals as (
    select
        (select coalesce(sum(n_events), 0) from predictions) as predicted_events,
        -- the events of known patterns, counted by another path (int_patterns__profiled
        -- groups stg_usage_events by pattern; counting them here joined 10M events to the
        -- patterns again: 4 s of a 1M-pattern refresh's tests)
        (
            select coalesce(sum(usage_count), 0) from {{ ref('int_patterns__profiled') }}
        ) as known_events
)

select * from outside
union all
select null, null, 'event count ' || predicted_events || ' <> ' || known_events
from event_totals
where predicted_events <> known_events
