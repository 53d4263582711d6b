-- Success of each pattern in each kind of task FOR ONE PROJECT, borrowing from the others,
-- in four levels of Beta-binomial shrinkage with var('prediction_prior_strength')
-- pseudo-events each: the project's own outcomes in the (context cluster, pattern) cell ->
-- the other projects' outcomes in the same cell -> the pattern across projects -> the
-- global mean across projects. Every other project's event counts
-- w(n) = var('project_share_weight') * k / (k + n) of one of the project's own, n being the
-- project's OWN events at that level (all, the pattern's, the cell's) and k =
-- var('project_share_fade'): the borrowed weight fades as the project's own evidence grows
-- (a young project leans on the others, an old one hardly; bench/project_sharing.py).
-- Weight 0: the project alone. With one project the borrowed levels are empty and
-- predicted_success equals pattern_predictions'. engram/numeric/ranking.py ranks with the
-- same formula (tests/test_projects.py checks they agree).
-- The query is macros/pattern_project_predictions_rows.sql (it can be scoped to some patterns).
-- The post-hook makes the table macro pattern_project_predictions_served(): the same query
-- over int_pattern_project_cells and int_project_priors, which the serving copy's view is.
-- depends_on: {{ ref('int_pattern_project_cells') }}
-- depends_on: {{ ref('int_project_priors') }}
{{ config(post_hook="{{ create_pattern_project_predictions_served() }}") }}

{{ pattern_project_predictions_rows() }}
