-- Per pattern: ranks run 1..n, similarity never increases along the ranks, no pattern
-- lists itself or another pattern twice. pattern_similar_pairs is a view, so this reads
-- it: on an incremental build only for the patterns of the descriptions whose lists it
-- rewrote (macros/changed_rows.sql, refreshed_rows(): a list is written whole, so its
-- rows share the stamp); a pattern's list is a function of its description's.
with

refreshed as (
    select distinct description_hash
    from {{ ref('int_pattern_texts__neighbors') }}
    where {{ refreshed_rows(ref('int_pattern_texts__neighbors')) }}
),

patterns as (
    select pattern_id
    from {{ ref('int_patterns__clustered') }}
    where description_hash in (select description_hash from refreshed)
),

pairs as (
    select
        pattern_id,
        similar_pattern_id,
        rank,
        similarity,
        row_number() over (partition by pattern_id order by rank) as position,
        lag(similarity) over (partition by pattern_id order by rank) as previous_similarity,
        count(*) over (partition by pattern_id, similar_pattern_id) as times_listed
    from {{ ref('pattern_similar_pairs') }}
    where pattern_id in (select pattern_id from patterns)
)

select *
from pairs
where rank <> position
    or similarity > previous_similarity + 1e-9
    or similar_pattern_id = pattern_id
    or times_listed > 1
