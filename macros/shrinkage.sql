{#
  Posterior mean of a Beta-binomial with fractional successes: `total` successes (the sum
  of outcome_quality) in `n` trials, shrunk toward `prior_mean` with `prior_strength`
  pseudo-trials. One definition for pattern_predictions and prediction_backtest, so the
  backtest scores exactly the formula the marts serve.
#}
{% macro shrunk_mean(total, n, prior_mean, prior_strength) -%}
    (({{ total }}) + ({{ prior_strength }}) * ({{ prior_mean }}))
    / (({{ n }}) + ({{ prior_strength }}))
{%- endmacro %}
