-- One row per pattern: what it says, its embedding, how often and how well it was used,
-- its cluster. A view: int_patterns__profiled holds the rows, and the embedding is joined
-- from the embedding cache by description hash (as stg_patterns does), so the warehouse
-- stores each distinct description's vector once instead of once per pattern. The serving
-- copy materializes it whole (engram.query.serving), so queries read a table.
{{ config(materialized='view') }}

with

profiled as (
    select * from {{ ref('int_patterns__profiled') }}
),

-- only the vectors of the variant the marts read (macros/active_embedding_model.sql)
active_model as (
    {{ active_embedding_model() }}
),

embeddings as (
    select text_hash, embedding from {{ source('raw', 'embeddings') }}
    where model = (select embedding_model from active_model)
),

final as (
    select
        profiled.pattern_id,
        profiled.description,
        profiled.pattern_type,
        profiled.metadata,
        embeddings.embedding,
        profiled.first_seen_at,
        profiled.first_used_at,
        profiled.last_used_at,
        profiled.usage_count,
        profiled.success_rate,
        profiled.cluster_id,
        profiled.cluster_label,
        profiled.theme_id,
        profiled.paraphrase_group_id,
        profiled.superseded_by
    from profiled
    left join embeddings on embeddings.text_hash = profiled.description_hash
)

select * from final
