-- The summary row aggregates exactly the weekly rows.
-- Shown in Dagster as an asset check of prediction_backtest_summary (the test reads several models).
{{ config(meta={'dagster': {'ref': {'name': 'prediction_backtest_summary'}}}) }}
with

weekly as (
    select
        count(*) as n_weeks,
        coalesce(sum(n_events), 0) as n_events,
        sum(brier_model * n_events) as se_model
    from {{ ref('prediction_backtest') }}
),

summary as (
    select * from {{ ref('prediction_backtest_summary') }}
)

select summary.*
from summary
cross join weekly
where summary.n_weeks <> weekly.n_weeks
   or summary.n_events <> weekly.n_events
   or (weekly.n_events > 0 and abs(summary.brier_model * weekly.n_events - weekly.se_model) > 1e-6)
