with

source as (
    select * from {{ source('raw', 'rejected_records') }}
),

renamed as (
    select
        run_id,
        source_file,
        line_number,
        record_kind,
        field,
        reason,
        raw_text,
        rejected_at
    from source
)

select * from renamed
