{#
  The `scoped` CTE of an incremental, week-grained file model: on a full build, every row of
  the `events` CTE; on an incremental run, only the events of the weeks touched by events
  loaded after the newest loaded_at the model has processed ({{ this }}.max_loaded_at), so
  late events for old weeks recompute their whole week. `min_files` is the raw list length
  an event needs to matter to the model (1 for file weeks, 2 for file pairs): cheap, and a
  superset of the events that count. The touched weeks are read from the view itself,
  not from `events` (a CTE used twice is materialized whole).
#}
{% macro events_in_touched_weeks(min_files) -%}
{% if is_incremental() %}
touched_weeks as (
    select distinct event_week
    from {{ ref('stg_usage_events') }}
    where loaded_at > (
        select coalesce(max(max_loaded_at), timestamp '-infinity') from {{ this }}
    )
        and {{ list_length('files_involved') }} >= {{ min_files }}
),

scoped as (
    select events.*
    from events
    {{ semi_join() }} touched_weeks on touched_weeks.event_week = events.event_week
),
{% else %}
scoped as (
    select * from events
),
{% endif %}
{%- endmacro %}
