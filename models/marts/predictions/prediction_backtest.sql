-- Walk-forward backtest, one row per scored week: the predictions of
-- int_prediction_backtest__predicted (made from earlier weeks only) scored by Brier score
-- against the week's outcomes, for the model and both baselines, and the model's skill.
-- Incremental on DuckDB: a refresh recomputes the weeks from the first whose input
-- changed and keeps the rows before it (macros/prediction_backtest_refresh.sql).
-- depends_on: {{ ref('int_pattern_context_weeks__aggregated') }}
{{ config(
    materialized='incremental' if target.type == 'duckdb' else 'table',
    incremental_strategy='append',
    pre_hook="{{ prediction_backtest_forget_changed_weeks() }}",
    post_hook="{{ prediction_backtest_save_digests() }}",
) }}

with

predicted as (
    {%- if is_incremental() %}
    {#- the pre-hook has deleted the weeks from the first changed one on: recompute from the
        day after the last week still held (every scored week before the change is held) #}
    {{ prediction_backtest_rows(
        from_week="(select coalesce(max(week) + 1, date '0001-01-01') from " ~ this ~ ")") }}
    {%- else %}
    select * from {{ ref('int_prediction_backtest__predicted') }}
    {%- endif %}
),

squared_errors as (
    -- sum over a cell's events of (p - q)^2, from the cell's sums:
    -- n p^2 - 2 p sum(q) + sum(q^2)
    select
        week,
        n_events,
        n_events * p_model * p_model - 2 * p_model * sum_quality + sum_sq_quality
            as se_model,
        n_events * p_pattern_mean * p_pattern_mean - 2 * p_pattern_mean * sum_quality
        + sum_sq_quality as se_pattern_mean,
        n_events * p_global_mean * p_global_mean - 2 * p_global_mean * sum_quality
        + sum_sq_quality as se_global_mean
    from predicted
),

weekly as (
    select
        week,
        sum(n_events)::bigint as n_events,
        greatest(sum(se_model), 0) / sum(n_events) as brier_model,
        greatest(sum(se_pattern_mean), 0) / sum(n_events) as brier_pattern_mean,
        greatest(sum(se_global_mean), 0) / sum(n_events) as brier_global_mean
    from squared_errors
    group by week
),

final as (
    select
        week,
        n_events,
        brier_model,
        brier_pattern_mean,
        brier_global_mean,
        1 - brier_model / nullif(brier_pattern_mean, 0) as skill_vs_pattern_mean,
        1 - brier_model / nullif(brier_global_mean, 0) as skill_vs_global_mean
    from weekly
)

select * from final
