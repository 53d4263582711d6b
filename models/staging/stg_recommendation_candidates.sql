-- One row per candidate a recommendation showed, with the recommendation's own fields.
with

recommendations as (
    select * from {{ source('raw', 'recommendations') }}
),

candidates as (
    select * from {{ source('raw', 'recommendation_candidates') }}
)

select
    r.recommendation_id,
    r.created_at,
    {{ week_start('r.created_at') }} as recommendation_week,
    r.task,
    r.strategy,
    r.seed,
    r.n_candidates,
    c.rank,
    c.pattern_id,
    c.score,
    c.propensity,
    c.propensity_best,
    c.propensity_cautious,
    c.propensity_explore,
    c.predicted_success,
    c.declining
from recommendations as r
join candidates as c using (recommendation_id)
