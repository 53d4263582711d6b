-- Outcome sums per (project, context cluster, pattern, week): everything the predictions
-- (pooled, and per project with borrowing) and their walk-forward backtest need. Squared sums let the backtest compute a cell's Brier score
-- without touching events again: sum((p - q)^2) = n p^2 - 2 p sum(q) + sum(q^2).

with

events as (
    select project_id, pattern_id, context_hash, event_week, outcome_quality
    from {{ ref('stg_usage_events') }}
),

patterns as (
    select pattern_id from {{ ref('stg_patterns') }}
),

contexts as (
    select context_hash, context_cluster_id from {{ ref('int_contexts__clustered') }}
),

located as (
    -- events of unknown patterns are left out (no description to predict for); events
    -- without a task text go to context cluster -1
    select
        events.project_id,
        coalesce(contexts.context_cluster_id, -1) as context_cluster_id,
        events.pattern_id,
        events.event_week as week,
        events.outcome_quality
    from events
    inner join patterns on patterns.pattern_id = events.pattern_id
    left join contexts on contexts.context_hash = events.context_hash
),

aggregated as (
    select
        project_id,
        context_cluster_id,
        pattern_id,
        week,
        count(*) as n_events,
        sum(outcome_quality) as sum_quality,
        sum(outcome_quality * outcome_quality) as sum_sq_quality
    from located
    group by project_id, context_cluster_id, pattern_id, week
)

select * from aggregated
