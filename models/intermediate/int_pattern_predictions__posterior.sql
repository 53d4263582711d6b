-- Beta-binomial posterior of each pattern's success in each context cluster, shrunk in
-- two levels: the cell's outcomes toward the pattern's (shrunk) overall mean, and the
-- pattern's outcomes toward the global mean (on a grid of 1 / var('prior_mean_steps')),
-- each with var('prediction_prior_strength') pseudo-events. Quality in [0, 1] counts as
-- fractional successes. The query is macros/pattern_predictions_posterior_rows.sql; the
-- post-hooks make the table macros pattern_predictions reads on a refresh: these rows for
-- some patterns only, and each pattern's input digest.
{{ config(post_hook=[
    "{{ create_pattern_predictions_posterior_for() }}",
    "{{ create_pattern_predictions_input_digests() }}",
]) }}

{{ pattern_predictions_posterior_rows() }}
