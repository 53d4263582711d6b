-- cluster_size, theme_size and paraphrase_group_size are the number of patterns carrying
-- the id, every pattern of stg_patterns is in pattern_clusters exactly once, and each
-- distinct description is in one group and one theme.
-- pattern_clusters is a view of int_patterns__clustered (per pattern) joined with
-- int_pattern_texts__described (per distinct description, where the sizes are): the
-- check reads the two tables, counting each description's patterns once (~24k rows at
-- 1M patterns) instead of every row of the view. A pattern is in the view exactly once
-- when it has one assignment row (int_patterns__clustered's unique pattern_id) and its
-- description one described row (unique description_hash, and 'undescribed' below).
-- Shown in Dagster as an asset check of pattern_clusters (the test reads several models).
{{ config(meta={'dagster': {'ref': {'name': 'pattern_clusters'}}}) }}
with

texts as (
    -- each description's patterns, per (group, number, theme): one row per description
    -- unless its patterns disagree on one of them
    select description_hash, cluster_id, paraphrase_group_id, theme_id, count(*) as n_members
    from {{ ref('int_patterns__clustered') }}
    group by description_hash, cluster_id, paraphrase_group_id, theme_id
),

described as (
    select texts.*, facts.cluster_size, facts.theme_size, facts.paraphrase_group_size
    from texts
    inner join {{ ref('int_pattern_texts__described') }} as facts
        on facts.description_hash = texts.description_hash
),

split_texts as (
    select 'description in two groups or themes' as problem, description_hash as id
    from texts
    group by description_hash
    having count(*) > 1
),

undescribed as (
    select 'description without group facts' as problem, texts.description_hash as id
    from texts
    {{ anti_join() }} {{ ref('int_pattern_texts__described') }} as facts
        on facts.description_hash = texts.description_hash
),

wrong_size as (
    select 'size' as problem, cluster_id::{{ text_type() }} as id
    from described
    group by cluster_id
    having min(cluster_size) <> sum(n_members) or max(cluster_size) <> sum(n_members)
),

theme_sizes as (
    select 'theme size' as problem, theme_id as id
    from described
    group by theme_id
    having min(theme_size) <> sum(n_members) or max(theme_size) <> sum(n_members)
),

group_sizes as (
    select 'paraphrase group size' as problem, paraphrase_group_id as id
    from described
    group by paraphrase_group_id
    having min(paraphrase_group_size) <> sum(n_members)
        or max(paraphrase_group_size) <> sum(n_members)
),

missing as (
    select 'missing' as problem, p.pattern_id as id
    from {{ ref('stg_patterns') }} as p
    {{ anti_join() }} {{ ref('int_patterns__clustered') }} as c on c.pattern_id = p.pattern_id
)

select * from split_texts
union all
select * from undescribed
union all
select * from wrong_size
union all
select * from theme_sizes
union all
select * from group_sizes
union all
select * from missing
