-- A theme's or paraphrase group's label starts with its medoid's description, the medoid
-- is in the group, and no description of the group is nearer the centroid than the
-- medoid's (issue 16: a label that reads like an outlier misleads; the medoid is the most
-- central distinct description, so this also bounds it by the group's median member).
-- Each row returned is a violation.
-- pattern_clusters is a view of int_patterns__clustered and int_pattern_texts__described
-- (per distinct description: similarities, labels, medoids); the check reads those, one
-- row per description (~24k at 1M patterns) instead of every row of the view twice.
{{ config(meta={'dagster': {'ref': {'name': 'pattern_clusters'}}}) }}
with

clustered as (
    select pattern_id, description_hash, theme_id, paraphrase_group_id
    from {{ ref('int_patterns__clustered') }}
),

texts as (
    -- each description's group and theme (pattern_clusters_sizes_match_members checks a
    -- description has one of each)
    select description_hash, any_value(theme_id) as theme_id,
           any_value(paraphrase_group_id) as paraphrase_group_id
    from clustered
    group by description_hash
),

described as (
    select texts.theme_id, texts.paraphrase_group_id, facts.*
    from texts
    inner join {{ ref('int_pattern_texts__described') }} as facts
        on facts.description_hash = texts.description_hash
),

medoids as (
    -- the medoid patterns, with their description and its facts
    select clustered.pattern_id, patterns.description, described.theme_id,
           described.paraphrase_group_id, described.similarity_to_theme_centroid,
           described.similarity_to_centroid
    from clustered
    inner join {{ ref('stg_patterns') }} as patterns
        on patterns.pattern_id = clustered.pattern_id
    inner join described on described.description_hash = clustered.description_hash
    where clustered.pattern_id in (
        select theme_medoid_pattern_id from described
        union
        select paraphrase_group_medoid_pattern_id from described
    )
),

theme_violations as (
    select distinct 'theme' as level, described.theme_id as id
    from described
    left join medoids as medoid on medoid.pattern_id = described.theme_medoid_pattern_id
    where medoid.pattern_id is null
        or medoid.theme_id <> described.theme_id
        or medoid.similarity_to_theme_centroid < described.similarity_to_theme_centroid - 1e-6
        or not {{ text_starts_with('described.theme_label', 'medoid.description') }}
),

group_violations as (
    select distinct 'paraphrase group' as level, described.paraphrase_group_id as id
    from described
    left join medoids as medoid
        on medoid.pattern_id = described.paraphrase_group_medoid_pattern_id
    where medoid.pattern_id is null
        or medoid.paraphrase_group_id <> described.paraphrase_group_id
        or medoid.similarity_to_centroid < described.similarity_to_centroid - 1e-6
        or not {{ text_starts_with('described.paraphrase_group_label', 'medoid.description') }}
)

select * from theme_violations
union all
select * from group_violations
