{#
  pattern_trends' query (models/marts/trends/pattern_trends.sql is this macro and nothing
  else), optionally for some patterns only: `patterns` is a subquery of pattern_ids. Each
  pattern's rows come from its own weekly sums alone, so the rows of a scoped call are
  exactly the view's rows for those patterns. pattern_trends_is_well_formed checks, on an
  incremental build, only the patterns whose weekly sums that build recomputed (reading
  the whole view at 10M events took 13-19 s of a refresh).
#}
{% macro pattern_trends_rows(patterns=none, weekly_sums=none) %}

with

weekly as (
    select pattern_id, week, n_events, sum_quality
    from {{ weekly_sums or ref('int_pattern_weeks__aggregated') }}
    {%- if patterns %}
    where pattern_id in {{ patterns }}
    {%- endif %}
),

spans as (
    select pattern_id, min(week) as first_week, max(week) as last_week
    from weekly
    group by pattern_id
),

calendar as (
    select
        spans.pattern_id,
        {{ weekly_dates('spans.first_week', 'spans.last_week') }}
            as week
    from spans
),

filled as (
    select
        calendar.pattern_id,
        calendar.week,
        coalesce(weekly.n_events, 0) as usage_count,
        coalesce(weekly.sum_quality, 0) as sum_quality
    from calendar
    left join weekly
        on weekly.pattern_id = calendar.pattern_id
        and weekly.week = calendar.week
),

-- Weeks are contiguous after filling, so N - 1 preceding rows are the N - 1 preceding
-- calendar weeks (N = var('trend_window_weeks'); pattern_alerts' current quality is this
-- average at a pattern's last week).
windowed as (
    select
        pattern_id,
        week,
        usage_count,
        case when usage_count > 0 then sum_quality / usage_count end as avg_quality,
        sum(sum_quality) over moving_window
            / nullif(sum(usage_count) over moving_window, 0) as moving_avg_quality
    from filled
    window moving_window as (
        partition by pattern_id order by week rows between {{ var('trend_window_weeks') - 1 }} preceding and current row
    )
),

final as (
    select
        pattern_id,
        week,
        usage_count,
        avg_quality,
        moving_avg_quality
    from windowed
)

select * from final
{% endmacro %}

{#
  pattern_trends' post-hook (DuckDB only): the table macro <schema>.pattern_trends_served(),
  the view's query over the weekly sums named without the database. The serving copy holds
  pattern_trends as a view of that text over its own copy of int_pattern_weeks__aggregated
  (engram.query.serving.SERVED_VIEWS), synced per pattern whose weekly sums changed: as a
  table of the gap-filled rows (33M at 10M events) a refresh's publish deleted and wrote
  ~1.6M of them for 5% of the patterns, ~5x the weekly rows behind them. DuckDB keeps a
  macro's text as written, so `engram.intermediate...` would break once the warehouse file
  is copied under another name (views are stored without it).
#}
{% macro create_pattern_trends_served() %}
    {%- if target.type == 'duckdb' -%}
        create or replace macro {{ this.schema }}.pattern_trends_served() as table
        {{ pattern_trends_rows(
            weekly_sums=ref('int_pattern_weeks__aggregated').include(database=False),
        ) }}
    {%- endif -%}
{% endmacro %}
