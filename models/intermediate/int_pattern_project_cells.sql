-- pattern_project_predictions' per-pattern part: per (project, context cluster, pattern),
-- the project's own sums and the cell's and the pattern's sums over every project. A
-- pattern's rows come from its own weekly sums alone, so the serving copy keeps this as a
-- table and rewrites only the patterns whose sums changed; the copy's
-- pattern_project_predictions is a view of it and int_project_priors
-- (macros/pattern_project_predictions_rows.sql). A view here, like the mart. The post-hook
-- makes the table macro int_pattern_project_cells_for(keys): these rows for some patterns
-- only (the copy's scoped sync).
{{ config(materialized='view', post_hook="{{ create_pattern_project_cells_for() }}") }}

{{ pattern_project_cells_rows(ref('int_pattern_context_weeks__aggregated')) }}
