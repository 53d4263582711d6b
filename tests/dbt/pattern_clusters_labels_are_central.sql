-- A theme's or paraphrase group's label starts with its medoid's description, and the
-- medoid is never farther from the centroid than the group's median member (issue 16: a
-- label that reads like an outlier misleads). Each row returned is a violation.
{{ config(meta={'dagster': {'ref': {'name': 'pattern_clusters'}}}) }}
with

clusters as (
    select * from {{ ref('pattern_clusters') }}
),

patterns as (
    select pattern_id, description from {{ ref('stg_patterns') }}
),

theme_medians as (
    select theme_id, median(similarity_to_theme_centroid) as median_similarity
    from clusters
    group by theme_id
),

group_medians as (
    select paraphrase_group_id, median(similarity_to_centroid) as median_similarity
    from clusters
    group by paraphrase_group_id
),

theme_violations as (
    select distinct 'theme' as level, clusters.theme_id as id
    from clusters
    inner join clusters as medoid on medoid.pattern_id = clusters.theme_medoid_pattern_id
    inner join theme_medians on theme_medians.theme_id = clusters.theme_id
    inner join patterns on patterns.pattern_id = medoid.pattern_id
    where medoid.theme_id <> clusters.theme_id
        or medoid.similarity_to_theme_centroid < theme_medians.median_similarity - 1e-6
        or not {{ text_starts_with('clusters.theme_label', 'patterns.description') }}
),

group_violations as (
    select distinct 'paraphrase group' as level, clusters.paraphrase_group_id as id
    from clusters
    inner join clusters as medoid
        on medoid.pattern_id = clusters.paraphrase_group_medoid_pattern_id
    inner join group_medians
        on group_medians.paraphrase_group_id = clusters.paraphrase_group_id
    inner join patterns on patterns.pattern_id = medoid.pattern_id
    where medoid.paraphrase_group_id <> clusters.paraphrase_group_id
        or medoid.similarity_to_centroid < group_medians.median_similarity - 1e-6
        or not {{ text_starts_with('clusters.paraphrase_group_label', 'patterns.description') }}
)

select * from theme_violations
union all
select * from group_violations
