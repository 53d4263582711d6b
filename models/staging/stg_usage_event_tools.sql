-- One row per (event, tool): tools are de-duplicated within an event.
with

source as (
    select event_id, tools_used, loaded_at from {{ source('raw', 'usage_events') }}
),

unnested as (
    select event_id, {{ unnest_list('tools_used') }} as tool, loaded_at from source
),

renamed as (
    select distinct event_id, tool, loaded_at from unnested
)

select * from renamed
