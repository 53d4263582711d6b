-- Did the advice help? Two kinds of rows, per week and overall:
--   kind 'arm':      mean outcome when the agent used the top recommendation, another
--                    shown candidate, a pattern the recommendation did not show, or cited
--                    no recommendation at all (events of weeks with recommendations);
--   kind 'strategy': each strategy's value estimated off-policy (IPS and self-normalised
--                    IPS, bootstrap intervals) against what the agent got (overall only).
with

outcomes as (
    select * from {{ ref('recommendation_outcomes') }}
),

weeks_with_advice as (
    select distinct recommendation_week as week from {{ ref('stg_recommendation_candidates') }}
),

unlinked as (
    select e.event_week, e.outcome_quality
    from {{ ref('stg_usage_events') }} as e
    join weeks_with_advice as w on w.week = e.event_week
    {{ anti_join() }} outcomes as o using (event_id)
),

arm_rows as (
    select event_week, arm, outcome_quality from outcomes
    union all
    select event_week, 'no_recommendation', outcome_quality from unlinked
),

by_week as (
    select 'week' as scope, event_week as week, 'arm' as kind, arm as name,
           count(*) as n_outcomes, avg(outcome_quality) as mean_outcome
    from arm_rows
    group by event_week, arm
),

overall as (
    select 'overall' as scope, null::date as week, 'arm' as kind, arm as name,
           count(*) as n_outcomes, avg(outcome_quality) as mean_outcome
    from arm_rows
    group by arm
),

arms as (
    select *, null::double as ips, null::double as ips_low, null::double as ips_high,
           null::double as snips, null::double as snips_low, null::double as snips_high,
           null::double as effective_n, null::bigint as n_skipped
    from (select * from by_week union all select * from overall)
),

strategies as (
    select 'overall' as scope, null::date as week, 'strategy' as kind, strategy as name,
           n_used as n_outcomes, agent_mean as mean_outcome, ips, ips_low, ips_high,
           snips, snips_low, snips_high, effective_n, n_skipped
    from {{ ref('int_recommendation_policy_values') }}
)

select * from arms
union all
select * from strategies
order by scope, week nulls first, kind, name
