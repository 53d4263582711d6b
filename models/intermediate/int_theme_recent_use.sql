-- Each theme's events in the last var('stale_weeks') weeks of the data, with the newest
-- event's time (the same on every row): what pattern_alerts' view counts a stale finding's
-- weeks unused to and quotes in its evidence, at read time, so that the findings
-- (int_pattern_alerts__found) need not be rewritten when an append moves them. The CTEs
-- are the findings' own (macros/alert_inputs.sql).
with

patterns as (
    select pattern_id, theme_id
    -- dim_patterns' rows (one per int_patterns__profiled row) without its join with the
    -- patterns' texts, which nothing here reads
    from {{ ref('int_patterns__profiled') }}
    where superseded_by is null
),

weekly as (
    select pattern_id, week, n_events, last_occurred_at
    from {{ ref('int_pattern_weeks__aggregated') }}
),

{{ alert_theme_recent_ctes(weekly='weekly', patterns='patterns') }}

select theme_recent.theme_id, theme_recent.recent_events, data_end.last_event_at
from theme_recent
cross join data_end
