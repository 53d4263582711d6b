-- One row per distinct task text (event context) with its embedding. A table, not a view:
-- it groups every event and feeds several marts.
{{ config(materialized='table') }}

with

source as (
    select context_hash, context, occurred_at
    from {{ source('raw', 'usage_events') }}
    where context_hash is not null
),

-- only the vectors of the variant the marts read (macros/active_embedding_model.sql)
active_model as (
    {{ active_embedding_model() }}
),

embeddings as (
    select text_hash, embedding from {{ source('raw', 'embeddings') }}
    where model = (select embedding_model from active_model)
),

grouped as (
    select
        context_hash,
        any_value(context) as context,
        count(*) as n_events,
        min(occurred_at) as first_used_at,
        max(occurred_at) as last_used_at
    from source
    group by context_hash
),

renamed as (
    select
        grouped.context_hash,
        grouped.context,
        embeddings.embedding,
        grouped.n_events,
        grouped.first_used_at,
        grouped.last_used_at
    from grouped
    left join embeddings on embeddings.text_hash = grouped.context_hash
)

select * from renamed
