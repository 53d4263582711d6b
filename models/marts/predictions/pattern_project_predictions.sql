-- Success of each pattern in each kind of task FOR ONE PROJECT, borrowing from the others:
-- the project's own outcomes in the (context cluster, pattern) cell shrink toward the other
-- projects' outcomes in the same cell, which shrink toward the pattern's mean across all
-- projects (itself shrunk toward the global mean: int_pattern_predictions__posterior, the
-- pooled levels, reused here so they live once). Each level adds
-- var('prediction_prior_strength') pseudo-events. With one project the other projects'
-- level is empty and predicted_success equals pattern_predictions'.

with

cells as (
    select * from {{ ref('int_pattern_context_weeks__aggregated') }}
),

pooled as (
    select
        context_cluster_id,
        context_cluster_label,
        pattern_id,
        n_events,
        n_events * mean_quality as sum_quality,
        pattern_mean_shrunk,
        prior_strength
    from {{ ref('int_pattern_predictions__posterior') }}
),

own as (
    select
        project_id,
        context_cluster_id,
        pattern_id,
        sum(n_events)::bigint as n_events,
        sum(sum_quality) as sum_quality
    from cells
    group by project_id, context_cluster_id, pattern_id
),

projects_per_cell as (
    select context_cluster_id, pattern_id, count(*) as n_projects
    from own
    group by context_cluster_id, pattern_id
),

levels as (
    select
        own.project_id,
        own.context_cluster_id,
        pooled.context_cluster_label,
        own.pattern_id,
        own.n_events,
        own.sum_quality / own.n_events as mean_quality,
        greatest(pooled.n_events - own.n_events, 0) as other_n_events,
        greatest(pooled.sum_quality - own.sum_quality, 0) as other_sum_quality,
        projects_per_cell.n_projects - 1 as other_projects,
        pooled.pattern_mean_shrunk,
        pooled.prior_strength,
        own.sum_quality as own_sum_quality
    from own
    inner join pooled
        on pooled.context_cluster_id = own.context_cluster_id
        and pooled.pattern_id = own.pattern_id
    inner join projects_per_cell
        on projects_per_cell.context_cluster_id = own.context_cluster_id
        and projects_per_cell.pattern_id = own.pattern_id
),

shrunk as (
    select
        *,
        {{ shrunk_mean('other_sum_quality', 'other_n_events',
                       'pattern_mean_shrunk', 'prior_strength') }} as others_mean_shrunk
    from levels
),

final as (
    select
        project_id,
        context_cluster_id,
        context_cluster_label,
        pattern_id,
        n_events,
        mean_quality,
        {{ shrunk_mean('own_sum_quality', 'n_events',
                       'others_mean_shrunk', 'prior_strength') }} as predicted_success,
        other_n_events,
        other_projects,
        others_mean_shrunk,
        pattern_mean_shrunk,
        prior_strength,
        own_sum_quality + prior_strength * others_mean_shrunk as posterior_alpha,
        (n_events - own_sum_quality) + prior_strength * (1 - others_mean_shrunk)
            as posterior_beta
    from shrunk
)

select * from final
