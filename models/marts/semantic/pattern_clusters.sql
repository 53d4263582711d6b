-- Every pattern in exactly one paraphrase group and one theme (computed in
-- int_patterns__clustered); cluster_* are the paraphrase level under their older names.

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
        similarity_to_centroid,
        theme_id,
        theme_size,
        theme_label,
        theme_terms,
        theme_medoid_pattern_id,
        paraphrase_group_id,
        paraphrase_group_size,
        paraphrase_group_label,
        paraphrase_group_medoid_pattern_id,
        similarity_to_theme_centroid
    from clustered
)

select * from final
