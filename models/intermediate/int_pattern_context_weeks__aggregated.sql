-- Outcome sums per (project, context cluster, pattern, week): everything the predictions
-- (pooled, and per project with borrowing) and their walk-forward backtest need. Squared sums let the backtest compute a cell's Brier score
-- without touching events again: sum((p - q)^2) = n p^2 - 2 p sum(q) + sum(q^2).
-- Incremental (macros/context_weeks_scope.sql): a refresh recomputes the (pattern, week)
-- groups that gained events since this model's own watermark, and every row after a merge
-- or when a counted task text moved to another context cluster.
-- depends_on: {{ ref('int_pattern_weeks__aggregated') }}
{{
    config(
        materialized=incremental_materialization(),
        incremental_strategy='delete+insert',
        unique_key=['pattern_id', 'week'],
        on_schema_change='append_new_columns',
        pre_hook="{% if is_incremental() and context_weeks_recompute_all() %}delete from {{ this }}{% endif %}",
        post_hook=[
            "{{ save_context_weeks_state('watermark') }}",
            "{{ save_context_weeks_state('contexts') }}",
        ],
    )
}}

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

{% if is_incremental() and not context_weeks_recompute_all() %}
touched as (
    -- the groups that gained events since this model's watermark (their recomputed
    -- weekly sums say when their newest event was loaded)
    select pattern_id, week
    from {{ ref('int_pattern_weeks__aggregated') }}
    where max_loaded_at > {{ context_weeks_watermark() }}
    union
    -- every week of a pattern known now whose events were left out before (loaded
    -- before the pattern was): patterns with events and no row here
    select weeks.pattern_id, weeks.week
    from {{ ref('int_pattern_weeks__aggregated') }} as weeks
    where weeks.pattern_id in (
        select pattern_id from patterns
        except
        select pattern_id from {{ this }}
    )
),

scoped as (
    select events.*
    from events
    {{ semi_join() }} touched
        on touched.pattern_id = events.pattern_id
        and touched.week = events.event_week
),
{% else %}
scoped as (
    select * from events
),
{% endif %}

located as (
    -- events of unknown patterns are left out (no description to predict for); events
    -- without a task text go to context cluster -1
    select
        scoped.project_id,
        coalesce(contexts.context_cluster_id, -1) as context_cluster_id,
        scoped.pattern_id,
        scoped.event_week as week,
        scoped.outcome_quality
    from scoped
    inner join patterns on patterns.pattern_id = scoped.pattern_id
    left join contexts on contexts.context_hash = scoped.context_hash
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

-- every row this run writes carries its stamp (macros/write_stamp.sql)
select *, {{ write_stamp_sql() }} as written_at from aggregated
