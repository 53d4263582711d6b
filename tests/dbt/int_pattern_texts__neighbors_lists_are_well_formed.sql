-- What pattern_similar_pairs (a view) relies on, per description's list: ranks run 1..n,
-- similarity never increases along them, the description's own patterns come first and
-- in id order, flagged exactly when the listed pattern has this description, and every
-- own pattern with an id up to last_same_description_id (the same on all of a list's
-- rows) is listed. Then each pattern's list (its description's minus itself, the later
-- entries moved up one rank when it is listed) has consecutive ranks and no pattern twice
-- (the view's unit test checks that arithmetic). Checked on the lists, ~11 rows per text,
-- not on the view's ~40 times as many per-pattern rows. On an incremental build only the
-- lists it rewrote (macros/changed_rows.sql, refreshed_rows(): a list is written whole,
-- so its rows share the stamp). Each row returned is a violation, with the reason.
with

lists as (
    select
        lists.description_hash,
        lists.list_rank,
        lists.similar_pattern_id,
        lists.similarity,
        lists.same_description,
        lists.last_same_description_id,
        row_number() over by_rank as position,
        lag(lists.similarity) over by_rank as previous_similarity,
        lag(lists.same_description) over by_rank as previous_same,
        lag(lists.similar_pattern_id) over by_rank as previous_pattern_id,
        max(case when lists.same_description then lists.similar_pattern_id end)
            over (partition by lists.description_hash) as last_own,
        -- (count(distinct ...) over a window: not on Spark)
        min(lists.last_same_description_id)
            over (partition by lists.description_hash) as lowest_last,
        max(lists.last_same_description_id)
            over (partition by lists.description_hash) as highest_last
    from {{ ref('int_pattern_texts__neighbors') }} as lists
    where {{ refreshed_rows(ref('int_pattern_texts__neighbors')) }}
    window by_rank as (partition by lists.description_hash order by lists.list_rank)
),

patterns as (
    select pattern_id, description_hash from {{ ref('int_patterns__clustered') }}
),

-- the patterns of the checked texts (all of a refresh's are a few percent)
own_patterns as (
    select pattern_id, description_hash
    from patterns
    where description_hash in (select description_hash from lists)
),

row_checks as (
    select
        lists.description_hash,
        lists.similar_pattern_id as pattern_id,
        case
            when lists.list_rank <> lists.position then 'ranks not consecutive'
            when lists.list_rank = 1 and not lists.same_description
                then 'the list does not start with an own pattern'
            when lists.similarity > lists.previous_similarity + 1e-9
                then 'similarity increases along the ranks'
            when lists.same_description and not lists.previous_same
                then 'an own pattern after another description''s'
            when lists.same_description and lists.previous_same
                and lists.similar_pattern_id <= lists.previous_pattern_id
                then 'own patterns not in id order'
            when lists.lowest_last <> lists.highest_last
                or lists.last_own is distinct from lists.last_same_description_id
                then 'last_same_description_id is not the highest own id listed'
            when lists.same_description
                <> (patterns.description_hash is not distinct from lists.description_hash)
                then 'same_description does not match the pattern''s description'
        end as violation
    from lists
    left join patterns on patterns.pattern_id = lists.similar_pattern_id
),

unlisted as (
    -- an own pattern with an id up to the last listed one must be listed
    select
        owners.description_hash,
        patterns.pattern_id,
        'an own pattern below last_same_description_id is not listed' as violation
    from (
        select distinct description_hash, last_same_description_id from lists
    ) as owners
    inner join own_patterns as patterns
        on patterns.description_hash = owners.description_hash
        and patterns.pattern_id <= owners.last_same_description_id
    where not exists (
        select 1 from lists
        where lists.description_hash = owners.description_hash
            and lists.similar_pattern_id = patterns.pattern_id
    )
),

too_few_own as (
    -- own patterns take the first min(their number, k + 1) places
    select
        owners.description_hash,
        cast(null as {{ dbt.type_string() }}) as pattern_id,
        'fewer own patterns listed than the description has, up to k + 1' as violation
    from (
        select description_hash, count(*) filter (where same_description) as n_own
        from lists
        group by description_hash
    ) as owners
    inner join (
        select description_hash, count(*) as n_patterns
        from own_patterns
        group by description_hash
    ) as texts on texts.description_hash = owners.description_hash
    where owners.n_own <> least(texts.n_patterns, {{ var('similar_pairs_k') + 1 }})
)

select * from row_checks where violation is not null
union all
select * from unlisted
union all
select * from too_few_own
