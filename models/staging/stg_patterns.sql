with

source as (
    select * from {{ source('raw', 'patterns') }}
),

-- only the vectors of the variant the marts read (macros/active_embedding_model.sql)
active_model as (
    {{ active_embedding_model() }}
),

embeddings as (
    select text_hash, embedding from {{ source('raw', 'embeddings') }}
    where model = (select embedding_model from active_model)
),

renamed as (
    select
        source.pattern_id,
        source.description,
        source.pattern_type,
        source.first_seen as first_seen_at,
        source.metadata,
        source.description_hash,
        embeddings.embedding,
        source.loaded_at
    from source
    left join embeddings on embeddings.text_hash = source.description_hash
)

select * from renamed
