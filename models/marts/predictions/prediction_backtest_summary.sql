-- The walk-forward backtest in one row: Brier scores weighted by events, over every
-- scored week, and the skill of the model against both baselines.

with

weekly as (
    select * from {{ ref('prediction_backtest') }}
),

totals as (
    select
        count(*) as n_weeks,
        coalesce(sum(n_events), 0)::bigint as n_events,
        min(week) as first_week,
        max(week) as last_week,
        sum(brier_model * n_events) / sum(n_events) as brier_model,
        sum(brier_pattern_mean * n_events) / sum(n_events) as brier_pattern_mean,
        sum(brier_global_mean * n_events) / sum(n_events) as brier_global_mean
    from weekly
),

final as (
    select
        n_weeks,
        n_events,
        first_week,
        last_week,
        brier_model,
        brier_pattern_mean,
        brier_global_mean,
        1 - brier_model / nullif(brier_pattern_mean, 0) as skill_vs_pattern_mean,
        1 - brier_model / nullif(brier_global_mean, 0) as skill_vs_global_mean,
        {{ var('prediction_prior_strength') }}::double as prior_strength,
        {{ var('backtest_min_history_weeks') }}::integer as min_history_weeks
    from totals
)

select * from final
