-- One row per (project, file, calendar week) (a path is a file within one project): events that touched the file and the sums of their
-- quality; the node side of the file graph. Counts every event, however many files it has.
-- Incremental like int_file_pairs__aggregated: weeks touched by newly loaded events are
-- recomputed from all their events and replaced (delete+insert on [project_id, file_path, week]).
{{
    config(
        materialized=incremental_materialization(),
        incremental_strategy='delete+insert',
        unique_key=['project_id', 'file_path', 'week'],
    )
}}

with

events as (
    select event_id, project_id, event_week, occurred_at, outcome_quality, files_involved,
           loaded_at
    from {{ ref('stg_usage_events') }}
),

{{ events_in_touched_weeks(min_files=1) }}

-- The in-scope events' distinct files (stg_usage_event_files rows for these events),
-- unnested here so that an incremental run unnests only the touched weeks. An event without
-- files gives no row. (No filter on the file count here: DuckDB would push it below the
-- semi join and compute list_distinct for every event.)
event_files as (
    select
        project_id,
        event_week,
        occurred_at,
        outcome_quality,
        loaded_at,
        {{ unnest_list(list_unique('files_involved')) }} as file_path
    from scoped
),

aggregated as (
    {{ weekly_sums('event_files', ['project_id', 'file_path']) }}
)

select * from aggregated
