-- int_prediction_backtest__predicted, checked in one pass (it is a view: thirteen column
-- tests re-ran the walk-forward query thirteen times, 2 minutes of a 10M-event build):
-- one row per (context cluster, pattern, week), no column null, and the model's prediction
-- and both baselines within [0, 1]. Each row returned is a violation, with the reason.
-- On an incremental `engram build` it checks only the weeks from the first whose input
-- changed since prediction_backtest's last run (prediction_backtest_checked_from(),
-- macros/prediction_backtest_refresh.sql): every row of those weeks, all patterns', since
-- the global mean so far moves them all; the weeks before are unchanged. It runs the
-- view's own query from that week (macros/prediction_backtest_rows.sql, from_week), as
-- the backtest's refresh does. A plain `dbt build`, the daily schedule and --full-refresh
-- check every row.
-- depends_on: {{ ref('int_prediction_backtest__predicted') }}
-- depends_on: {{ ref('int_pattern_context_weeks__aggregated') }}
{%- set from_week = prediction_backtest_checked_from() %}
with

predicted as (
    select
        *,
        count(*) over (partition by context_cluster_id, pattern_id, week) as copies
    from {% if from_week %}({{ prediction_backtest_rows(from_week=from_week) }}) as scoped{% else %}{{ ref('int_prediction_backtest__predicted') }}{% endif %}
),

checked as (
    select
        context_cluster_id,
        pattern_id,
        week,
        case
            when copies > 1 then 'duplicate (context_cluster_id, pattern_id, week)'
            when week is null or week_number is null or context_cluster_id is null
                or pattern_id is null or n_events is null or sum_quality is null
                or sum_sq_quality is null
                then 'a key or outcome column is null'
            when p_model is null or p_pattern_mean is null or p_global_mean is null
                then 'a prediction is null'
            when p_model not between 0 and 1 or p_pattern_mean not between 0 and 1
                or p_global_mean not between 0 and 1
                then 'a prediction outside [0, 1]'
        end as violation
    from predicted
)

select * from checked where violation is not null
