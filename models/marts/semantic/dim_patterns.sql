-- One row per pattern: what it says, its embedding, how often and how well it was used,
-- its cluster. A view: int_patterns__profiled holds the usage and cluster columns, and the
-- text, type, metadata and embedding come from stg_patterns (which joins the embedding
-- from the cache by description hash), so the warehouse stores each distinct
-- description's vector once instead of once per pattern, and each text once. The serving
-- copy materializes it whole (engram.query.serving), so queries read a table.
{{ config(materialized='view') }}

with

profiled as (
    select * from {{ ref('int_patterns__profiled') }}
),

patterns as (
    select pattern_id, description, pattern_type, metadata, embedding
    from {{ ref('stg_patterns') }}
),

final as (
    select
        profiled.pattern_id,
        patterns.description,
        patterns.pattern_type,
        patterns.metadata,
        patterns.embedding,
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
    inner join patterns on patterns.pattern_id = profiled.pattern_id
)

select * from final
