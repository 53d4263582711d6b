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

{#
  What one other project's event counts for where the project has `n_own` events of its
  own at that level: `weight` * `fade` / (`fade` + n_own), `weight` where it has none. The
  borrowed evidence fades as the project's own grows, so sharing helps a young project
  without pulling an old one toward the others (engram/numeric/ranking.py, same formula).
#}
{% macro faded_share_weight(weight, fade, n_own) -%}
    case
        when ({{ n_own }}) > 0
            then ({{ weight }}) * ({{ fade }}) / greatest(({{ fade }}) + ({{ n_own }}), 1e-300)
        else ({{ weight }})
    end
{%- endmacro %}
