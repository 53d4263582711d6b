with

source as (
    select * from {{ source('raw', 'usage_events') }}
),

renamed as (
    select
        event_id,
        pattern_id,
        session_id,
        project_id,
        occurred_at,
        date_trunc('week', occurred_at)::date as event_week,
        outcome_quality,
        files_involved,
        tools_used,
        len(list_distinct(files_involved)) as n_files,
        len(list_distinct(tools_used)) as n_tools,
        context,
        context_hash,
        loaded_at
    from source
)

select * from renamed
