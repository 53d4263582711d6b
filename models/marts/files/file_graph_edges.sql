-- Edges of the file relationship graph: the file_cooccurrence pairs, undirected, per project.
with

pairs as (
    select * from {{ ref('file_cooccurrence') }}
),

final as (
    select
        project_id,
        file_a,
        file_b,
        co_occurrences as weight,
        avg_quality,
        success_correlation,
        quality_slope_per_week,
        direction
    from pairs
)

select * from final
