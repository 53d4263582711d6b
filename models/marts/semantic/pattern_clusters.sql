-- Every pattern in exactly one cluster of paraphrases (computed in int_patterns__clustered).

with

clustered as (
    select * from {{ ref('int_patterns__clustered') }}
),

final as (
    select
        pattern_id,
        cluster_id,
        cluster_size,
        cluster_label,
        similarity_to_centroid
    from clustered
)

select * from final
