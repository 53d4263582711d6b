-- The merges in force: one row per dropped pattern, with the pattern its events now count
-- toward. A merge into a pattern that was itself merged later follows the chain to its end
-- (A <- B, B <- C: C's events count toward A), so every mart sees one final id.
with recursive

source as (
    select * from {{ source('raw', 'pattern_supersessions') }}
),

active as (
    -- the newest unrevoked merge of each dropped pattern
    select dropped_pattern_id, kept_pattern_id, recorded_at
    from source
    where revoked_at is null
    qualify row_number() over (
        partition by dropped_pattern_id order by recorded_at desc, supersession_id desc
    ) = 1
),

chains (dropped_pattern_id, kept_pattern_id, depth) as (
    select dropped_pattern_id, kept_pattern_id, 1
    from active
    union all
    select chains.dropped_pattern_id, active.kept_pattern_id, chains.depth + 1
    from chains
    inner join active on active.dropped_pattern_id = chains.kept_pattern_id
    -- a cycle (refused by the CLI, possible by hand) stops here instead of looping
    where chains.depth < 32 and active.kept_pattern_id <> chains.dropped_pattern_id
),

resolved as (
    select
        chains.dropped_pattern_id,
        {{ value_at_max('chains.kept_pattern_id', 'chains.depth') }} as kept_pattern_id,
        max(chains.depth) as chain_length
    from chains
    group by chains.dropped_pattern_id
),

final as (
    select
        resolved.dropped_pattern_id,
        resolved.kept_pattern_id,
        resolved.chain_length,
        active.recorded_at
    from resolved
    inner join active on active.dropped_pattern_id = resolved.dropped_pattern_id
)

select * from final
