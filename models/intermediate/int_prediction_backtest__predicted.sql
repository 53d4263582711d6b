-- Walk-forward predictions: each (context cluster, pattern, week) cell of week W is
-- predicted from events of weeks < W only, by running sums over the weekly aggregates (no
-- re-scan of history per week), with the same shrinkage as pattern_predictions. Beside it
-- the two baselines: the pattern's mean so far (the global mean so far for a new
-- pattern), and the global mean so far. A view: prediction_backtest scores it. The query
-- is macros/prediction_backtest_rows.sql (it can be scoped to some patterns).
{{ config(materialized='view') }}

{{ prediction_backtest_rows() }}
