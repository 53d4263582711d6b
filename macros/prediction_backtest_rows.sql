{#
  int_prediction_backtest__predicted's query (the model is this macro and nothing else),
  optionally for some patterns only: `patterns` is a subquery of pattern_ids. A pattern's
  rows come from its own weekly sums plus the global weekly sums, which are always taken
  over every pattern, so the rows of a scoped call are exactly the view's rows for those
  patterns. int_prediction_backtest__predicted_is_well_formed checks, on an incremental
  build, only the patterns that build recomputed (the whole view took ~21 s of a refresh
  at 10M events).
  `from_week` (a date expression) gives only the rows of weeks from it on: the running
  sums start from one sum per cell and per pattern over the weeks before it, exact
  decimals, so those rows equal the view's. prediction_backtest recomputes with it only
  the weeks from the first whose input changed (macros/prediction_backtest_refresh.sql).
#}
{% macro prediction_backtest_rows(patterns=none, from_week=none) %}

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
    {%- if from_week %}
    {{ 'and' if patterns else 'where' }} week >= {{ from_week }}
    {%- endif %}
    group by context_cluster_id, pattern_id, week
),
{%- if from_week %}

-- the weeks before from_week in one sum per cell: the running sums below start from it
-- (exact decimals, so the same values as running over every week); only the patterns
-- with rows from from_week on, the only ones it is joined to (after a drop of recent
-- events ~5% of them: summing every pattern's cells, 4M groups, was most of a 10M-event
-- refresh's recomputation of one week)
cells_before as (
    select
        context_cluster_id,
        pattern_id,
        sum(n_events) as n_events,
        sum({{ exact_decimal('sum_quality') }}) as sum_quality
    from {{ ref('int_pattern_context_weeks__aggregated') }}
    where week < {{ from_week }}
        and pattern_id in (select pattern_id from cells)
    group by context_cluster_id, pattern_id
),

patterns_before as (
    select pattern_id, sum(n_events) as n_events, sum(sum_quality) as sum_quality
    from cells_before
    group by pattern_id
),
{%- endif %}

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
        {%- if from_week %}
        n_start + coalesce(sum(n_events) over earlier, 0) as n_before,
        sum_start + coalesce(sum(sum_quality) over earlier, 0) as sum_before
    from (
        select
            pattern_weeks.*,
            coalesce(patterns_before.n_events, 0) as n_start,
            coalesce(patterns_before.sum_quality, 0) as sum_start
        from pattern_weeks
        left join patterns_before on patterns_before.pattern_id = pattern_weeks.pattern_id
    ) as started
        {%- else %}
        coalesce(sum(n_events) over earlier, 0) as n_before,
        coalesce(sum(sum_quality) over earlier, 0) as sum_before
    from pattern_weeks
        {%- endif %}
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
        {%- if from_week %}
        n_start + coalesce(sum(n_events) over earlier, 0) as n_before,
        sum_start + coalesce(sum(sum_quality) over earlier, 0) as sum_before
    from (
        select
            cells.*,
            coalesce(cells_before.n_events, 0) as n_start,
            coalesce(cells_before.sum_quality, 0) as sum_start
        from cells
        left join cells_before
            on cells_before.context_cluster_id = cells.context_cluster_id
            and cells_before.pattern_id = cells.pattern_id
    ) as started
        {%- else %}
        coalesce(sum(n_events) over earlier, 0) as n_before,
        coalesce(sum(sum_quality) over earlier, 0) as sum_before
    from cells
        {%- endif %}
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
        -- shrunk toward the global mean on its grid, as pattern_predictions is; the
        -- global-mean baseline (p_global_mean) stays exact
        {{ shrunk_mean('pattern_history.sum_before', 'pattern_history.n_before',
                       prior_mean('scored_weeks.global_mean'), 'prior.prior_strength') }}
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
