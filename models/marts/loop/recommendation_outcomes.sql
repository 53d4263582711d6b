-- Outcomes that cite a recommendation_id, with what that recommendation had shown:
-- which arm the agent took (the top candidate, another shown one, or a pattern not
-- shown) and the probability the logging strategy, and each strategy, had of showing
-- the used pattern first (the propensities the off-policy estimates weight by).
with

links as (
    select event_id, recommendation_id from {{ source('raw', 'recommendation_links') }}
),

events as (
    select event_id, pattern_id, occurred_at, event_week, outcome_quality
    from {{ ref('stg_usage_events') }}
),

recommendations as (
    select distinct recommendation_id, created_at, strategy, n_candidates
    from {{ ref('stg_recommendation_candidates') }}
),

shown as (
    select recommendation_id, pattern_id, rank, propensity, propensity_best,
           propensity_cautious, propensity_explore
    from {{ ref('stg_recommendation_candidates') }}
)

select
    e.event_id,
    l.recommendation_id,
    r.strategy,
    r.created_at as recommended_at,
    e.occurred_at,
    e.event_week,
    e.pattern_id,
    e.outcome_quality,
    s.rank as used_rank,
    case
        when s.rank = 1 then 'top'
        when s.rank is not null then 'other_shown'
        else 'not_shown'
    end as arm,
    coalesce(s.propensity, 0) as logging_propensity,
    coalesce(s.propensity_best, 0) as propensity_best,
    coalesce(s.propensity_cautious, 0) as propensity_cautious,
    coalesce(s.propensity_explore, 0) as propensity_explore
from links as l
join events as e using (event_id)
join recommendations as r using (recommendation_id)
left join shown as s
    on s.recommendation_id = l.recommendation_id and s.pattern_id = e.pattern_id
