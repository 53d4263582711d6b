-- One row per (event, file): files are de-duplicated within an event.
with

source as (
    select event_id, files_involved, loaded_at from {{ source('raw', 'usage_events') }}
),

unnested as (
    select event_id, {{ unnest_list('files_involved') }} as file_path, loaded_at from source
),

renamed as (
    select distinct event_id, file_path, loaded_at from unnested
)

select * from renamed
