-- One row per (project, file_a, file_b, calendar week), file_a < file_b, for files seen
-- together in an event. Per project: a path means nothing across repositories, so
-- `src/app.py` of two projects are two files (an event belongs to one project). Pairs come from a self-join of the per-event distinct file rows on event_id with
-- a.file_path < b.file_path: each unordered pair once per event, never a file with itself
-- (not `unnest(files) as a, unnest(files) as b` in one select, which zips the list with
-- itself), and a file listed twice in an event counts once.
-- Events with more than var('cooccurrence_max_files') distinct files form no pairs: n files
-- give n(n-1)/2 pairs, so one bulk change touching 500 files would add 124,750 pair rows and
-- say nothing about files that travel together. They still count in the all-events totals
-- (int_pattern_weeks__aggregated, int_file_weeks__aggregated).
-- Incremental: events loaded after the newest loaded_at already processed mark their weeks as
-- touched; every pair row of a touched week is recomputed from all that week's events and
-- replaced (delete+insert on [project_id, file_a, file_b, week]), so late events for old weeks count.
{{
    config(
        materialized=incremental_materialization(),
        incremental_strategy='delete+insert',
        unique_key=['project_id', 'file_a', 'file_b', 'week'],
    )
}}

with

events as (
    select event_id, project_id, event_week, occurred_at, outcome_quality, files_involved,
           loaded_at
    from {{ ref('stg_usage_events') }}
),

{{ events_in_touched_weeks(min_files=2) }}

-- The in-scope events' distinct files: the rows of stg_usage_event_files (one per event and
-- file, a file listed twice counts once) for these events, unnested here so that an
-- incremental run unnests only the touched weeks, not every event. n_files is the same count
-- as stg_usage_events.n_files; it is filtered after the unnest, in `pairs`, because a filter
-- here would be pushed below the semi join and compute list_distinct for every event.
event_files as (
    select
        event_id,
        project_id,
        event_week,
        occurred_at,
        outcome_quality,
        loaded_at,
        {{ list_length(list_unique('files_involved')) }} as n_files,
        {{ unnest_list(list_unique('files_involved')) }} as file_path
    from scoped
    where {{ list_length('files_involved') }} >= 2
),

pairs as (
    select
        a.project_id,
        a.event_week,
        a.occurred_at,
        a.outcome_quality,
        a.loaded_at,
        a.file_path as file_a,
        b.file_path as file_b
    from event_files as a
    inner join event_files as b
        on a.event_id = b.event_id
        and a.file_path < b.file_path
    where a.n_files <= {{ var('cooccurrence_max_files') }}
),

aggregated as (
    {{ weekly_sums('pairs', ['project_id', 'file_a', 'file_b']) }}
)

select * from aggregated
