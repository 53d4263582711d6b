{#
  pattern_project_predictions' query (the model is this macro and nothing else), optionally
  for some patterns only: `patterns` is a subquery of pattern_ids. A pattern's rows come
  from its own cells plus each project's totals, which are always taken over every
  pattern, so the rows of a scoped call are exactly the view's rows for those patterns.
  pattern_project_predictions_is_well_formed checks, on an incremental build, only the
  patterns that build recomputed (the whole view took ~19 s of a refresh at 10M events).
#}
{% macro pattern_project_predictions_rows(patterns=none) %}

with

-- sum_quality as an exact decimal: this is a view, and sums of doubles could differ in
-- the last bits between reads (macros/exact_decimal.sql)
cells as (
    select
        project_id,
        context_cluster_id,
        pattern_id,
        n_events,
        {{ exact_decimal('sum_quality') }} as sum_quality
    from {{ ref('int_pattern_context_weeks__aggregated') }}
    {%- if patterns %}
    where pattern_id in {{ patterns }}
    {%- endif %}
),

labels as (
    select distinct context_cluster_id, context_cluster_label
    from {{ ref('int_contexts__clustered') }}
),

settings as (
    select
        {{ var('prediction_prior_strength') }}::double as prior_strength,
        {{ var('project_share_weight') }}::double as share_weight,
        {{ var('project_share_fade') }}::double as share_fade
),

own_cells as (
    select
        project_id,
        context_cluster_id,
        pattern_id,
        sum(n_events)::bigint as n_events,
        sum(sum_quality) as sum_quality
    from cells
    group by project_id, context_cluster_id, pattern_id
),

all_cells as (
    select
        context_cluster_id,
        pattern_id,
        sum(n_events) as n_events,
        sum(sum_quality) as sum_quality,
        count(*) as n_projects
    from own_cells
    group by context_cluster_id, pattern_id
),

own_patterns as (
    select project_id, pattern_id, sum(n_events) as n_events, sum(sum_quality) as sum_quality
    from own_cells
    group by project_id, pattern_id
),

all_patterns as (
    select pattern_id, sum(n_events) as n_events, sum(sum_quality) as sum_quality
    from own_cells
    group by pattern_id
),

-- every pattern's events, also when the rows are scoped: the project's and the global
-- means are priors of every cell (exact sums, so the same values either way)
own_totals as (
    select
        project_id,
        sum(n_events) as n_events,
        sum({{ exact_decimal('sum_quality') }}) as sum_quality
    from {{ ref('int_pattern_context_weeks__aggregated') }}
    group by project_id
),

all_totals as (
    select sum(n_events) as n_events, sum(sum_quality) as sum_quality from own_totals
),

-- The other projects' outcomes are moved by shift = (the project's mean quality - theirs)
-- x n_own / (n_own + prior_strength) before they are borrowed: what carries over is how a
-- pattern did there relative to their usual, not their baseline
-- (engram/numeric/ranking.py, bench/project_sharing.py).
shifts as (
    select
        own_totals.project_id,
        own_totals.n_events as own_n,
        own_totals.sum_quality as own_sum,
        all_totals.n_events - own_totals.n_events as other_n,
        all_totals.sum_quality - own_totals.sum_quality as other_sum,
        -- the project's mean shrunk toward theirs with prior_strength pseudo-events, so a
        -- project with a handful of events does not shift everything by their noise
        case
            when own_totals.n_events > 0 and all_totals.n_events > own_totals.n_events
                then (own_totals.sum_quality / own_totals.n_events
                    - (all_totals.sum_quality - own_totals.sum_quality)
                    / (all_totals.n_events - own_totals.n_events))
                * own_totals.n_events / (own_totals.n_events + settings.prior_strength)
            else 0
        end as baseline_shift
    from own_totals
    cross join all_totals
    cross join settings
),

-- w(n) at the global level
global_weights as (
    select
        shifts.*,
        {{ faded_share_weight('settings.share_weight', 'settings.share_fade', 'shifts.own_n') }}
            as lam
    from shifts
    cross join settings
),

-- the project's global mean: its own events plus w(N own) x the others' (shifted)
global_means as (
    select
        project_id,
        baseline_shift,
        (own_sum + lam * least(greatest(other_sum + baseline_shift * other_n, 0), other_n))
        / (own_n + lam * other_n) as global_mean
    from global_weights
),

pattern_others as (
    select
        own_patterns.project_id,
        own_patterns.pattern_id,
        own_patterns.n_events as own_n,
        own_patterns.sum_quality as own_sum,
        all_patterns.n_events - own_patterns.n_events as other_n,
        least(greatest(
            all_patterns.sum_quality - own_patterns.sum_quality
            + global_means.baseline_shift * (all_patterns.n_events - own_patterns.n_events),
            0), all_patterns.n_events - own_patterns.n_events) as other_sum,
        global_means.global_mean,
        {{ faded_share_weight('settings.share_weight', 'settings.share_fade',
                              'own_patterns.n_events') }} as lam
    from own_patterns
    inner join all_patterns on all_patterns.pattern_id = own_patterns.pattern_id
    inner join global_means on global_means.project_id = own_patterns.project_id
    cross join settings
),

pattern_means as (
    select
        pattern_others.project_id,
        pattern_others.pattern_id,
        {{ shrunk_mean(
            'pattern_others.own_sum + pattern_others.lam * pattern_others.other_sum',
            'pattern_others.own_n + pattern_others.lam * pattern_others.other_n',
            'pattern_others.global_mean', 'settings.prior_strength') }} as pattern_mean_shrunk
    from pattern_others
    cross join settings
),

levels as (
    select
        own_cells.project_id,
        own_cells.context_cluster_id,
        own_cells.pattern_id,
        own_cells.n_events,
        own_cells.sum_quality,
        all_cells.n_events - own_cells.n_events as other_n_events,
        least(greatest(
            all_cells.sum_quality - own_cells.sum_quality
            + global_means.baseline_shift * (all_cells.n_events - own_cells.n_events),
            0), all_cells.n_events - own_cells.n_events) as other_sum_quality,
        global_means.baseline_shift,
        all_cells.n_projects - 1 as other_projects,
        pattern_means.pattern_mean_shrunk,
        settings.prior_strength,
        settings.share_weight,
        {{ faded_share_weight('settings.share_weight', 'settings.share_fade',
                              'own_cells.n_events') }} as cell_share_weight
    from own_cells
    inner join all_cells
        on all_cells.context_cluster_id = own_cells.context_cluster_id
        and all_cells.pattern_id = own_cells.pattern_id
    inner join pattern_means
        on pattern_means.project_id = own_cells.project_id
        and pattern_means.pattern_id = own_cells.pattern_id
    inner join global_means on global_means.project_id = own_cells.project_id
    cross join settings
),

shrunk as (
    select
        *,
        {{ shrunk_mean('cell_share_weight * other_sum_quality',
                       'cell_share_weight * other_n_events',
                       'pattern_mean_shrunk', 'prior_strength') }} as others_mean_shrunk
    from levels
),

final as (
    select
        shrunk.project_id,
        shrunk.context_cluster_id,
        coalesce(labels.context_cluster_label, '(no task text)') as context_cluster_label,
        shrunk.pattern_id,
        shrunk.n_events,
        shrunk.sum_quality / shrunk.n_events as mean_quality,
        {{ shrunk_mean('shrunk.sum_quality', 'shrunk.n_events',
                       'shrunk.others_mean_shrunk', 'shrunk.prior_strength') }}
            as predicted_success,
        shrunk.other_n_events,
        shrunk.other_projects,
        shrunk.baseline_shift,
        shrunk.others_mean_shrunk,
        shrunk.pattern_mean_shrunk,
        shrunk.prior_strength,
        shrunk.share_weight,
        shrunk.cell_share_weight,
        shrunk.sum_quality + shrunk.prior_strength * shrunk.others_mean_shrunk
            as posterior_alpha,
        (shrunk.n_events - shrunk.sum_quality)
        + shrunk.prior_strength * (1 - shrunk.others_mean_shrunk) as posterior_beta
    from shrunk
    left join labels on labels.context_cluster_id = shrunk.context_cluster_id
)

select * from final
{% endmacro %}
