-- The first two replacement candidates of each theme (best expected quality, shrunk toward
-- the global mean; at least var('replacement_min_events') events; not declining): the
-- findings (int_pattern_alerts__found) name one of them, and pattern_alerts' view reads
-- its events and expected quality here at read time, because the global prior moves
-- them with every append. The CTEs are the findings' own (macros/alert_inputs.sql).
with

patterns as (
    select pattern_id, usage_count, success_rate, theme_id
    -- dim_patterns' rows (one per int_patterns__profiled row) without its join with the
    -- patterns' texts, which nothing here reads
    from {{ ref('int_patterns__profiled') }}
    where superseded_by is null
),

trends as (
    select pattern_id, direction
    from {{ ref('pattern_trend_summary') }}
),

{{ alert_candidate_ctes(patterns='patterns', trends='trends') }}

select theme_id, candidate_rank, pattern_id, usage_count, expected_quality
from ranked_candidates
where candidate_rank <= 2
