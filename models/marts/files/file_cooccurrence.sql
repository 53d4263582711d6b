-- One row per project and unordered file pair (file_a < file_b) seen together in at least
-- var('cooccurrence_min_support') events of that project, with how those events went
-- compared with all the project's events. Pairs come from the weekly sums; the per-project
-- population is one grouped pass over stg_usage_events (no per-pair scan over events). See file_cooccurrence.yml for the formulas.
with

pair_weeks as (
    select project_id, file_a, file_b, week, n_events, sum_quality, sum_quality_sq,
           first_occurred_at, last_occurred_at
    from {{ ref('int_file_pairs__aggregated') }}
),

-- All the project's events, whatever their files: the population of the point-biserial
-- correlation (events of unknown patterns included, as in int_pattern_weeks__aggregated).
population as (
    select
        project_id,
        count(*) as n_all,
        sum(outcome_quality) as sum_all,
        sum(outcome_quality * outcome_quality) as sum_sq_all
    from {{ ref('stg_usage_events') }}
    group by project_id
),

population_stats as (
    select
        project_id,
        n_all,
        sum_all,
        sum_all / n_all as mean_all,
        sqrt(greatest(sum_sq_all - sum_all * sum_all / n_all, 0) / n_all) as sd_all
    from population
),

spans as (
    select project_id, file_a, file_b, min(week) as first_week
    from pair_weeks
    group by project_id, file_a, file_b
    having sum(n_events) >= {{ var('cooccurrence_min_support') }}
),

indexed as (
    select
        pair_weeks.*,
        {{ weeks_between('spans.first_week', 'pair_weeks.week') }} as x
    from pair_weeks
    inner join spans
        on spans.project_id = pair_weeks.project_id
        and spans.file_a = pair_weeks.file_a
        and spans.file_b = pair_weeks.file_b
),

moments as (
    select
        project_id,
        file_a,
        file_b,
        sum(n_events) as n,
        sum(n_events * x) as sx,
        sum(n_events * x * x) as sxx,
        sum(sum_quality) as sy,
        sum(sum_quality_sq) as syy,
        sum(x * sum_quality) as sxy,
        min(first_occurred_at) as first_seen_at,
        max(last_occurred_at) as last_seen_at
    from indexed
    group by project_id, file_a, file_b
),

stats as (
    select
        moments.project_id,
        moments.file_a,
        moments.file_b,
        moments.n,
        moments.sy / moments.n as avg_quality,
        moments.sy / moments.n - population_stats.mean_all as quality_lift,
        -- point-biserial r: m1 = pair mean, m0 = mean of the other events
        case
            when population_stats.sd_all > 0 and moments.n < population_stats.n_all
                then (
                    moments.sy / moments.n
                    - (population_stats.sum_all - moments.sy)
                    / (population_stats.n_all - moments.n)
                )
                / population_stats.sd_all
                * sqrt(moments.n::double * (population_stats.n_all - moments.n))
                / population_stats.n_all
        end as success_correlation,
        {{ trend_slope_and_t('moments.n', 'moments.sx', 'moments.sxx', 'moments.sy',
                             'moments.syy', 'moments.sxy') }},
        moments.first_seen_at,
        moments.last_seen_at
    from moments
    inner join population_stats on population_stats.project_id = moments.project_id
),

final as (
    select
        project_id,
        file_a,
        file_b,
        n as co_occurrences,
        avg_quality,
        quality_lift,
        success_correlation,
        quality_slope_per_week,
        slope_t_stat,
        {{ trend_direction('n', 'quality_slope_per_week', 'slope_t_stat') }} as direction,
        first_seen_at,
        last_seen_at
    from stats
)

select * from final
