-- pattern_project_predictions' shared part: per project, the global mean and the baseline
-- shift that every cell of the project leans on, and the settings. Every event of every
-- pattern moves them; a few rows (macros/pattern_project_predictions_rows.sql).
{{ config(materialized='view') }}

{{ project_priors_rows(ref('int_pattern_context_weeks__aggregated')) }}
