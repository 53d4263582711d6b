with

source as (
    select * from {{ source('raw', 'usage_events') }}
),

-- merges in force (`engram merge-patterns`): a dropped pattern's events count toward the
-- kept one here, once, so every model downstream sees the kept id
supersessions as (
    select dropped_pattern_id, kept_pattern_id from {{ ref('stg_pattern_supersessions') }}
),

renamed as (
    select
        source.event_id,
        coalesce(supersessions.kept_pattern_id, source.pattern_id) as pattern_id,
        source.pattern_id as recorded_pattern_id,
        source.session_id,
        source.project_id,
        source.occurred_at,
        {{ week_start('source.occurred_at') }} as event_week,
        source.outcome_quality,
        source.files_involved,
        source.tools_used,
        {{ list_length(list_unique('source.files_involved')) }} as n_files,
        {{ list_length(list_unique('source.tools_used')) }} as n_tools,
        source.context,
        source.context_hash,
        source.loaded_at
    from source
    left join supersessions on supersessions.dropped_pattern_id = source.pattern_id
)

select * from renamed
