{#
  int_pattern_predictions__posterior's query (the model is this macro and nothing else),
  optionally for some patterns only: `patterns` is a subquery of pattern_ids. A pattern's
  rows come from its own cells plus the global mean, which is always taken over every
  cell, so the rows of a scoped call are exactly the view's rows for those patterns.
  pattern_predictions computes, on a refresh, only the rows of the patterns whose inputs
  changed (pattern_predictions_input_digests below) with it: the whole posterior took
  3.5-5.8 s at 10M events (docs/benchmarks.md), for the ~5% of its patterns with new events.
  `cells` and `labels` name the two inputs (the table macros below name them without the
  database).
#}
{% macro pattern_predictions_posterior_rows(patterns=none, cells=none, labels=none) %}

with

-- sum_quality as an exact decimal: this is a view, and sums of doubles could differ in
-- the last bits between reads (macros/exact_decimal.sql)
cells as (
    select
        context_cluster_id,
        pattern_id,
        n_events,
        {{ exact_decimal('sum_quality') }} as sum_quality
    from {{ cells or ref('int_pattern_context_weeks__aggregated') }}
    {%- if patterns %}
    where pattern_id in {{ patterns }}
    {%- endif %}
),

context_labels as (
    select distinct context_cluster_id, context_cluster_label
    from {{ labels or ref('int_contexts__clustered') }}
),

prior as (
    select {{ var('prediction_prior_strength') }}::double as prior_strength
),

by_context as (
    select
        context_cluster_id,
        pattern_id,
        sum(n_events)::bigint as n_events,
        sum(sum_quality) as sum_quality
    from cells
    group by context_cluster_id, pattern_id
),

by_pattern as (
    select
        pattern_id,
        sum(n_events)::bigint as n_events,
        sum(sum_quality) as sum_quality
    from cells
    group by pattern_id
),

-- the global mean on its grid (macros/shrinkage.sql, prior_mean), over every pattern's
-- cells even in a scoped call: a refresh then leaves the rows of patterns without new
-- events exactly as they were
overall as (
    {{ pattern_predictions_global_mean(cells or ref('int_pattern_context_weeks__aggregated')) }}
),

pattern_means as (
    select
        by_pattern.pattern_id,
        by_pattern.n_events as pattern_n_events,
        by_pattern.sum_quality / by_pattern.n_events as pattern_mean_quality,
        {{ shrunk_mean('by_pattern.sum_quality', 'by_pattern.n_events',
                       'overall.global_mean_quality', 'prior.prior_strength') }}
            as pattern_mean_shrunk
    from by_pattern
    cross join overall
    cross join prior
),

posterior as (
    select
        by_context.context_cluster_id,
        by_context.pattern_id,
        by_context.n_events,
        by_context.sum_quality / by_context.n_events as mean_quality,
        pattern_means.pattern_n_events,
        pattern_means.pattern_mean_quality,
        pattern_means.pattern_mean_shrunk,
        prior.prior_strength,
        {{ shrunk_mean('by_context.sum_quality', 'by_context.n_events',
                       'pattern_means.pattern_mean_shrunk', 'prior.prior_strength') }}
            as predicted_success,
        {{ posterior_shapes('by_context.sum_quality', 'by_context.n_events',
                            'pattern_means.pattern_mean_shrunk', 'prior.prior_strength') }}
    from by_context
    inner join pattern_means on pattern_means.pattern_id = by_context.pattern_id
    cross join prior
),

final as (
    select
        posterior.context_cluster_id,
        coalesce(context_labels.context_cluster_label, '(no task text)')
            as context_cluster_label,
        posterior.pattern_id,
        posterior.n_events,
        posterior.mean_quality,
        posterior.pattern_n_events,
        posterior.pattern_mean_quality,
        posterior.pattern_mean_shrunk,
        posterior.prior_strength,
        posterior.predicted_success,
        posterior.posterior_alpha,
        posterior.posterior_beta
    from posterior
    left join context_labels on context_labels.context_cluster_id = posterior.context_cluster_id
)

select * from final
{% endmacro %}

{#
  The prior every pattern's mean shrinks toward: the mean outcome over all `cells`, put on
  its grid. One row, one column (global_mean_quality). Read by the posterior and by the
  input digests, so both see the same value.
#}
{% macro pattern_predictions_global_mean(cells) %}
    select {{ prior_mean('sum(' ~ exact_decimal('sum_quality') ~ ') / sum(n_events)') }}
        as global_mean_quality
    from {{ cells }}
{% endmacro %}

{#
  One row per pattern with cells: a hash of everything its posterior rows are computed
  from (its cells, the labels of their context clusters, the global mean on its grid and
  the text of the posterior's query, which holds the prior strength). pattern_predictions
  stores it on each row it writes (input_digest) and, on a refresh, recomputes only the
  patterns whose digest differs from the stored one: new, gone or with any input changed.
  Since the digest is written with the rows, in the same delete+insert, a table cut short
  or emptied by a killed build shows as patterns whose digest is missing, and is made
  whole by the next refresh. A changed query text (new code, another prior strength or
  grid) changes every digest: every pattern is recomputed.
#}
{% macro pattern_predictions_input_digests(cells, labels, definition) %}

with

overall as (
    {{ pattern_predictions_global_mean(cells) }}
),

context_labels as (
    select distinct context_cluster_id, context_cluster_label from {{ labels }}
)

select
    cells.pattern_id,
    hash(
        '{{ definition }}',
        any_value(overall.global_mean_quality),
        count(*),
        -- an order-free sum of the cells' hashes
        sum(hash(cells.project_id, cells.context_cluster_id, context_labels.context_cluster_label,
                 cells.week, cells.n_events, cells.sum_quality)::hugeint)
    ) as input_digest
from {{ cells }} as cells
left join context_labels on context_labels.context_cluster_id = cells.context_cluster_id
cross join overall
group by cells.pattern_id
{% endmacro %}

{#
  int_pattern_predictions__posterior's post-hooks (DuckDB only): the table macros
  <schema>.int_pattern_predictions__posterior_for(keys), the view's rows for a list of
  pattern_ids, and <schema>.int_pattern_predictions__input_digests(), each pattern's input
  digest. pattern_predictions reads both on a refresh (filtering the view instead computes
  every pattern's rows first). Inputs are named without the database, as in
  create_pattern_trends_served (a copied warehouse file keeps a macro's text as written).
#}
{% macro create_pattern_predictions_posterior_for() %}
    {%- if target.type == 'duckdb' -%}
        create or replace macro {{ this.schema }}.int_pattern_predictions__posterior_for(keys) as table
        {{ pattern_predictions_posterior_rows(
            patterns='(select unnest(keys))',
            cells=ref('int_pattern_context_weeks__aggregated').include(database=False),
            labels=ref('int_contexts__clustered').include(database=False),
        ) }}
    {%- endif -%}
{% endmacro %}

{% macro create_pattern_predictions_input_digests() %}
    {%- if target.type == 'duckdb' -%}
        {%- set cells = ref('int_pattern_context_weeks__aggregated').include(database=False) -%}
        {%- set labels = ref('int_contexts__clustered').include(database=False) -%}
        create or replace macro {{ this.schema }}.int_pattern_predictions__input_digests() as table
        {{ pattern_predictions_input_digests(
            cells, labels,
            local_md5(pattern_predictions_posterior_rows(cells=cells, labels=labels)),
        ) }}
    {%- endif -%}
{% endmacro %}
