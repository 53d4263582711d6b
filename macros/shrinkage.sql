{#
  Posterior mean of a Beta-binomial with fractional successes: `total` successes (the sum
  of outcome_quality) in `n` trials, shrunk toward `prior_mean` with `prior_strength`
  pseudo-trials. One definition for pattern_predictions and prediction_backtest, so the
  backtest scores exactly the formula the marts serve.
#}
{#
  The prior of last resort, the global mean quality, on a grid of 1 / var('prior_mean_steps')
  (0.01): half-way up rounds up, floor(g * steps + 0.5) / steps, the same double arithmetic
  in DuckDB, Spark and Python (engram.numeric.ranking.prior_mean). Why a grid: every
  prediction is shrunk toward it, so an exact mean would move with every new event and
  make a refresh recompute all 4M pattern_predictions rows at 10M events; on the grid it
  moves only when the mean crosses a step, and a refresh recomputes the patterns whose
  events changed (issue 18). Exact on either side: a full rebuild rounds the same way.
#}
{% macro prior_mean(global_mean) -%}
    (floor(cast(({{ global_mean }}) as double) * {{ var('prior_mean_steps') }} + 0.5)
     / {{ var('prior_mean_steps') }})
{%- endmacro %}

{% macro shrunk_mean(total, n, prior_mean, prior_strength) -%}
    (({{ total }}) + ({{ prior_strength }}) * ({{ prior_mean }}))
    / (({{ n }}) + ({{ prior_strength }}))
{%- endmacro %}

{#
  The shapes of that Beta posterior, as the columns posterior_alpha and posterior_beta
  (alpha / (alpha + beta) is shrunk_mean): the successes and failures plus the prior's
  pseudo-trials split by `prior_mean`. pattern_predictions' credible interval is computed
  from them (engram/numeric/posterior.py); one definition for it and
  pattern_project_predictions.
#}
{% macro posterior_shapes(total, n, prior_mean, prior_strength) -%}
    ({{ total }}) + ({{ prior_strength }}) * ({{ prior_mean }}) as posterior_alpha,
        (({{ n }}) - ({{ total }})) + ({{ prior_strength }}) * (1 - ({{ prior_mean }}))
            as posterior_beta
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
