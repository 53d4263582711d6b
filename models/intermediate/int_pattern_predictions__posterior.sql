-- Beta-binomial posterior of each pattern's success in each context cluster, shrunk in
-- two levels: the cell's outcomes toward the pattern's (shrunk) overall mean, and the
-- pattern's outcomes toward the global mean (on a grid of 1 / var('prior_mean_steps')),
-- each with var('prediction_prior_strength') pseudo-events. Quality in [0, 1] counts as
-- fractional successes.

with

-- sum_quality as an exact decimal: this is a view, and sums of doubles could differ in
-- the last bits between reads (macros/exact_decimal.sql)
cells as (
    select
        context_cluster_id,
        pattern_id,
        n_events,
        {{ exact_decimal('sum_quality') }} as sum_quality
    from {{ ref('int_pattern_context_weeks__aggregated') }}
),

context_labels as (
    select distinct context_cluster_id, context_cluster_label
    from {{ ref('int_contexts__clustered') }}
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

-- the global mean on its grid (macros/shrinkage.sql, prior_mean): a refresh then leaves
-- the rows of patterns without new events exactly as they were
overall as (
    select {{ prior_mean('sum(sum_quality) / sum(n_events)') }} as global_mean_quality
    from cells
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
        by_context.sum_quality + prior.prior_strength * pattern_means.pattern_mean_shrunk
            as posterior_alpha,
        (by_context.n_events - by_context.sum_quality)
        + prior.prior_strength * (1 - pattern_means.pattern_mean_shrunk) as posterior_beta
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
