-- One row per used pattern: its quality trend over all its events, from the weekly sums.
-- x = whole weeks since the Monday epoch 1970-01-05, date_diff('day', date '1970-01-05',
-- week) / 7, taken relative to the pattern's first week (same slope, small exact sums).
-- Incremental: a pattern's row comes from its own weekly sums alone, so a refresh
-- recomputes the patterns with a week newer than this model's own watermark
-- (macros/own_watermark.sql), from all their weeks, and delete+insert on pattern_id
-- replaces their rows (at 10M events: ~5% of 1M patterns after a 1% drop; the whole mart
-- took 5-7 s). A merge or unmerge since that watermark, or no watermark yet, recomputes
-- every row (the pre-hook empties the table: a merged-away pattern's row must go).
{{
    config(
        materialized=incremental_materialization(),
        incremental_strategy='delete+insert',
        unique_key='pattern_id',
        pre_hook="{% if is_incremental() and own_watermark_recompute_all() %}delete from {{ this }}{% endif %}",
        post_hook="{{ save_own_watermark(not is_incremental() or own_watermark_recompute_all()) }}",
    )
}}
with

weekly as (
    select pattern_id, week, n_events, sum_quality, sum_quality_sq
    from {{ ref('int_pattern_weeks__aggregated') }}
    {%- if is_incremental() and not own_watermark_recompute_all() %}
    where pattern_id in (
        select pattern_id from {{ ref('int_pattern_weeks__aggregated') }}
        where max_loaded_at > {{ own_watermark() }}
    )
    {%- endif %}
),

spans as (
    select pattern_id, min(week) as first_week, max(week) as last_week
    from weekly
    group by pattern_id
),

indexed as (
    select
        weekly.pattern_id,
        spans.first_week,
        spans.last_week,
        weekly.n_events,
        weekly.sum_quality,
        weekly.sum_quality_sq,
        {{ weeks_between('spans.first_week', 'weekly.week') }} as x
    from weekly
    inner join spans on spans.pattern_id = weekly.pattern_id
),

moments as (
    select
        pattern_id,
        first_week,
        last_week,
        sum(n_events) as n,
        sum(n_events * x) as sx,
        sum(n_events * x * x) as sxx,
        sum(sum_quality) as sy,
        sum(sum_quality_sq) as syy,
        sum(x * sum_quality) as sxy
    from indexed
    group by pattern_id, first_week, last_week
),

stats as (
    select
        pattern_id,
        n,
        first_week,
        last_week,
        sy / n as avg_quality,
        {{ trend_slope_and_t('n', 'sx', 'sxx', 'sy', 'syy', 'sxy') }}
    from moments
),

final as (
    select
        pattern_id,
        n as n_events,
        first_week,
        last_week,
        avg_quality,
        quality_slope_per_week,
        slope_t_stat,
        {{ trend_direction('n', 'quality_slope_per_week', 'slope_t_stat') }} as direction
    from stats
)

select * from final
