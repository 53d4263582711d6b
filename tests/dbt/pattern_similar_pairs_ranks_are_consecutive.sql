-- Ranks run 1..n per pattern with similarity never increasing along the ranks. On an
-- incremental build only the lists it rewrote (macros/changed_rows.sql, refreshed_rows():
-- a list is written whole, so its rows share the stamp).
with

pairs as (
    select
        pattern_id,
        rank,
        similarity,
        row_number() over (partition by pattern_id order by rank) as position,
        lag(similarity) over (partition by pattern_id order by rank) as previous_similarity
    from {{ ref('pattern_similar_pairs') }}
    where {{ refreshed_rows(ref('pattern_similar_pairs')) }}
)

select *
from pairs
where rank <> position or similarity > previous_similarity + 1e-9
