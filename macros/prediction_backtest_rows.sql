{#
  int_prediction_backtest__predicted's query (the model is this macro and nothing else),
  optionally for some patterns only: `patterns` is a subquery of pattern_ids. A pattern's
  rows come from its own weekly sums plus the global weekly sums, which are always taken
  over every pattern, so the rows of a scoped call are exactly the view's rows for those
  patterns. int_prediction_backtest__predicted_is_well_formed checks, on an incremental
  build, only the patterns that build recomputed (the whole view took ~21 s of a refresh
  at 10M events).
#}
{% macro prediction_backtest_rows(patterns=none) %}

with

-- pooled over projects: the backtest scores the pooled pattern_predictions
cells as (
    select
        context_cluster_id,
        pattern_id,
        week,
        sum(n_events) as n_events,
        -- exact sums: a view's double sums could differ in the last bits between reads
        -- (macros/exact_decimal.sql); the running sums below stay exact too
        sum({{ exact_decimal('sum_quality') }}) as sum_quality,
        sum({{ exact_decimal('sum_sq_quality') }}) as sum_sq_quality
    from {{ ref('int_pattern_context_weeks__aggregated') }}
    {%- if patterns %}
    where pattern_id in {{ patterns }}
    {%- endif %}
    group by context_cluster_id, pattern_id, week
),

prior as (
    select {{ var('prediction_prior_strength') }}::double as prior_strength
),

-- every pattern's events, also when the rows are scoped: the global mean so far is a
-- prior of every cell (exact sums, so the same value either way)
weeks as (
    select
        week,
        sum(n_events) as n_events,
        sum({{ exact_decimal('sum_quality') }}) as sum_quality
    from {{ ref('int_pattern_context_weeks__aggregated') }}
    group by week
),

global_history as (
    select
        week,
        row_number() over (order by week) as week_number,
        sum(n_events) over earlier as n_before,
        sum(sum_quality) over earlier as sum_before
    from weeks
    window earlier as (order by week rows between unbounded preceding and 1 preceding)
),

pattern_weeks as (
    select
        pattern_id,
        week,
        sum(n_events) as n_events,
        sum(sum_quality) as sum_quality
    from cells
    group by pattern_id, week
),

pattern_history as (
    select
        pattern_id,
        week,
        coalesce(sum(n_events) over earlier, 0) as n_before,
        coalesce(sum(sum_quality) over earlier, 0) as sum_before
    from pattern_weeks
    window earlier as (
        partition by pattern_id order by week rows between unbounded preceding and 1 preceding
    )
),

cell_history as (
    select
        context_cluster_id,
        pattern_id,
        week,
        n_events,
        sum_quality,
        sum_sq_quality,
        coalesce(sum(n_events) over earlier, 0) as n_before,
        coalesce(sum(sum_quality) over earlier, 0) as sum_before
    from cells
    window earlier as (
        partition by context_cluster_id, pattern_id
        order by week rows between unbounded preceding and 1 preceding
    )
),

scored_weeks as (
    select
        week,
        week_number,
        sum_before / n_before as global_mean
    from global_history
    where week_number > {{ var('backtest_min_history_weeks') }}
      and n_before > 0
),

pattern_baselines as (
    select
        pattern_history.pattern_id,
        pattern_history.week,
        scored_weeks.global_mean,
        case
            when pattern_history.n_before > 0
                then pattern_history.sum_before / pattern_history.n_before
            else scored_weeks.global_mean
        end as pattern_mean,
        {{ shrunk_mean('pattern_history.sum_before', 'pattern_history.n_before',
                       'scored_weeks.global_mean', 'prior.prior_strength') }}
            as pattern_mean_shrunk
    from pattern_history
    inner join scored_weeks on scored_weeks.week = pattern_history.week
    cross join prior
),

predictions as (
    select
        cell_history.week,
        scored_weeks.week_number,
        cell_history.context_cluster_id,
        cell_history.pattern_id,
        cell_history.n_events,
        cast(cell_history.sum_quality as double) as sum_quality,
        cast(cell_history.sum_sq_quality as double) as sum_sq_quality,
        {{ shrunk_mean('cell_history.sum_before', 'cell_history.n_before',
                       'pattern_baselines.pattern_mean_shrunk', 'prior.prior_strength') }}
            as p_model,
        pattern_baselines.pattern_mean as p_pattern_mean,
        pattern_baselines.global_mean as p_global_mean
    from cell_history
    inner join pattern_baselines
        on pattern_baselines.pattern_id = cell_history.pattern_id
        and pattern_baselines.week = cell_history.week
    inner join scored_weeks on scored_weeks.week = cell_history.week
    cross join prior
)

select * from predictions
{% endmacro %}
