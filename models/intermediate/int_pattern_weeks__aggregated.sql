-- One row per (pattern, calendar week) with the sums that the trend marts need.
-- Incremental: a run takes only events loaded after the newest loaded_at already processed,
-- finds the (pattern_id, week) groups they touch and recomputes those groups from all their
-- events; delete+insert on [pattern_id, week] then replaces them. So a late event for an old
-- week rewrites that week's row instead of being lost or counted twice. A merge or unmerge
-- since the last run (macros/supersessions_changed.sql) recomputes every row instead.
{{
    config(
        materialized=incremental_materialization(),
        incremental_strategy='delete+insert',
        unique_key=['pattern_id', 'week'],
        on_schema_change='append_new_columns',
        pre_hook="{% if supersessions_changed() %}delete from {{ this }}{% endif %}",
    )
}}

with

events as (
    select pattern_id, event_week, occurred_at, outcome_quality, loaded_at
    from {{ ref('stg_usage_events') }}
),

{% if is_incremental() and not supersessions_changed() %}
-- Reads the view itself: a CTE used twice would be materialized whole.
touched as (
    select distinct pattern_id, event_week
    from {{ ref('stg_usage_events') }}
    where loaded_at > (
        select coalesce(max(max_loaded_at), {{ earliest_timestamp() }}) from {{ this }}
    )
),

scoped as (
    select events.*
    from events
    {{ semi_join() }} touched
        on touched.pattern_id = events.pattern_id
        and touched.event_week = events.event_week
),
{% else %}
scoped as (
    select * from events
),
{% endif %}

aggregated as (
    {{ weekly_sums('scoped', ['pattern_id']) }}
)

-- every row this run writes carries its stamp (macros/write_stamp.sql)
select *, {{ write_stamp_sql() }} as written_at from aggregated
