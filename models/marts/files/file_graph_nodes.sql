-- Nodes of the file relationship graph: every (project, file) seen in an event, with its
-- event count, mean quality and degree (number of edges in file_graph_edges).
with

file_weeks as (
    select project_id, file_path, n_events, sum_quality, first_occurred_at, last_occurred_at
    from {{ ref('int_file_weeks__aggregated') }}
),

edges as (
    select project_id, file_a, file_b from {{ ref('file_graph_edges') }}
),

files as (
    select
        project_id,
        file_path,
        sum(n_events) as n_events,
        sum(sum_quality) / sum(n_events) as avg_quality,
        min(first_occurred_at) as first_seen_at,
        max(last_occurred_at) as last_seen_at
    from file_weeks
    group by project_id, file_path
),

endpoints as (
    select project_id, file_a as file_path from edges
    union all
    select project_id, file_b from edges
),

degrees as (
    select project_id, file_path, count(*) as degree
    from endpoints
    group by project_id, file_path
),

final as (
    select
        files.project_id,
        files.file_path,
        files.n_events,
        files.avg_quality,
        coalesce(degrees.degree, 0) as degree,
        files.first_seen_at,
        files.last_seen_at
    from files
    left join degrees
        on degrees.project_id = files.project_id
        and degrees.file_path = files.file_path
)

select * from final
