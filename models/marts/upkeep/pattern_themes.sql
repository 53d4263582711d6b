-- One row per theme (one kind of problem): size, label, its members' usage and success,
-- and the theme's own weekly quality trend (same least-squares rule as
-- pattern_trend_summary, over the events of all its members).
with

clusters as (
    select
        pattern_id,
        theme_id,
        theme_size,
        theme_label,
        theme_terms,
        theme_medoid_pattern_id,
        paraphrase_group_id
    from {{ ref('pattern_clusters') }}
),

weekly as (
    select
        clusters.theme_id,
        weeks.week,
        sum(weeks.n_events) as n_events,
        sum(weeks.sum_quality) as sum_quality,
        sum(weeks.sum_quality_sq) as sum_quality_sq
    from {{ ref('int_pattern_weeks__aggregated') }} as weeks
    inner join clusters on clusters.pattern_id = weeks.pattern_id
    group by clusters.theme_id, weeks.week
),

spans as (
    select theme_id, min(week) as first_week, max(week) as last_week
    from weekly
    group by theme_id
),

moments as (
    select
        weekly.theme_id,
        sum(weekly.n_events) as n,
        sum(weekly.n_events * ({{ weeks_between('spans.first_week', 'weekly.week') }})) as sx,
        sum(
            weekly.n_events
            * ({{ weeks_between('spans.first_week', 'weekly.week') }})
            * ({{ weeks_between('spans.first_week', 'weekly.week') }})
        ) as sxx,
        sum(weekly.sum_quality) as sy,
        sum(weekly.sum_quality_sq) as syy,
        sum(({{ weeks_between('spans.first_week', 'weekly.week') }}) * weekly.sum_quality) as sxy
    from weekly
    inner join spans on spans.theme_id = weekly.theme_id
    group by weekly.theme_id
),

stats as (
    select
        theme_id,
        n,
        sy / n as success_rate,
        {{ trend_slope_and_t('n', 'sx', 'sxx', 'sy', 'syy', 'sxy') }}
    from moments
),

members as (
    select
        clusters.theme_id,
        any_value(clusters.theme_size) as theme_size,
        any_value(clusters.theme_label) as theme_label,
        any_value(clusters.theme_terms) as theme_terms,
        any_value(clusters.theme_medoid_pattern_id) as theme_medoid_pattern_id,
        count(distinct clusters.paraphrase_group_id) as n_paraphrase_groups,
        count(trend.pattern_id) as n_used_patterns
    from clusters
    left join {{ ref('pattern_trend_summary') }} as trend on trend.pattern_id = clusters.pattern_id
    group by clusters.theme_id
),

final as (
    select
        members.theme_id,
        members.theme_size,
        members.theme_label,
        members.theme_terms,
        members.theme_medoid_pattern_id,
        members.n_paraphrase_groups,
        members.n_used_patterns,
        coalesce(stats.n, 0) as usage_count,
        stats.success_rate,
        spans.first_week,
        spans.last_week,
        stats.quality_slope_per_week,
        stats.slope_t_stat,
        case
            when stats.n is null then 'unused'
            else {{ trend_direction('stats.n', 'stats.quality_slope_per_week', 'stats.slope_t_stat') }}
        end as direction
    from members
    left join stats on stats.theme_id = members.theme_id
    left join spans on spans.theme_id = members.theme_id
)

select * from final
