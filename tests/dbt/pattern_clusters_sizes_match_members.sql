-- cluster_size, theme_size and paraphrase_group_size are the number of patterns carrying
-- the id, and every pattern of
-- stg_patterns is in pattern_clusters exactly once.
-- Shown in Dagster as an asset check of pattern_clusters (the test reads several models).
{{ config(meta={'dagster': {'ref': {'name': 'pattern_clusters'}}}) }}
with

sizes as (
    select cluster_id, count(*) as n_members, max(cluster_size) as max_size,
           min(cluster_size) as min_size
    from {{ ref('pattern_clusters') }}
    group by cluster_id
),

wrong_size as (
    select 'size' as problem, cluster_id::{{ text_type() }} as id
    from sizes
    where min_size <> n_members or max_size <> n_members
),

theme_sizes as (
    select 'theme size' as problem, theme_id as id
    from {{ ref('pattern_clusters') }}
    group by theme_id
    having min(theme_size) <> count(*) or max(theme_size) <> count(*)
),

group_sizes as (
    select 'paraphrase group size' as problem, paraphrase_group_id as id
    from {{ ref('pattern_clusters') }}
    group by paraphrase_group_id
    having min(paraphrase_group_size) <> count(*) or max(paraphrase_group_size) <> count(*)
),

missing as (
    select 'missing' as problem, p.pattern_id as id
    from {{ ref('stg_patterns') }} as p
    {{ anti_join() }} {{ ref('pattern_clusters') }} as c on c.pattern_id = p.pattern_id
)

select * from wrong_size
union all
select * from theme_sizes
union all
select * from group_sizes
union all
select * from missing
