-- The slope computed from weekly running sums equals DuckDB's regr_slope over the raw events
-- with x = whole weeks since the Monday epoch 1970-01-05 (regr_slope gives NaN without x
-- spread, where the mart gives null).
-- Shown in Dagster as an asset check of pattern_trend_summary (the test reads several models).
-- On an incremental `engram build` it checks only the patterns whose weekly sums that build
-- recomputed (changed_patterns(), macros/changed_rows.sql): a pattern's row comes from its
-- own events alone, and the others' events did not change since a build checked them.
-- A plain `dbt build`, the daily schedule and --full-refresh check every pattern.
{{ config(meta={'dagster': {'ref': {'name': 'pattern_trend_summary'}}}) }}
-- depends_on: {{ ref('int_pattern_weeks__aggregated') }}
{%- set changed = changed_patterns() %}
with

direct as (
    select
        pattern_id,
        count(*) as n_events,
        regr_slope(outcome_quality, {{ days_between("date '1970-01-05'", 'event_week') }} / 7)
            as raw_slope
    from {{ ref('stg_usage_events') }}
    {%- if changed %}
    where pattern_id in {{ changed }}
    {%- endif %}
    group by pattern_id
),

cleaned as (
    select
        pattern_id,
        n_events,
        case when not isnan(raw_slope) then raw_slope end as slope
    from direct
),

mart as (
    select pattern_id, n_events, quality_slope_per_week as slope
    from {{ ref('pattern_trend_summary') }}
    {%- if changed %}
    where pattern_id in {{ changed }}
    {%- endif %}
)

select cleaned.pattern_id, cleaned.slope, mart.slope as mart_slope
from cleaned
full outer join mart on mart.pattern_id = cleaned.pattern_id
where mart.pattern_id is null
    or cleaned.pattern_id is null
    or cleaned.n_events <> mart.n_events
    or (cleaned.slope is null) <> (mart.slope is null)
    or abs(cleaned.slope - mart.slope) > 1e-9
