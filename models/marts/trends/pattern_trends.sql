-- One row per pattern per calendar week (Monday, UTC) from the pattern's first event week to
-- its last, empty weeks filled in. Deterministic: no now()-relative window; the span is the
-- data's own. A view (issue 18): the gap-filled rows are most of its 33M rows at 10M events
-- and took 286 MiB of the warehouse, re-derived from int_pattern_weeks__aggregated (a
-- full read took 15 s at 10M events on a loaded machine); the serving copy stores it as a table, sorted for lookups by pattern
-- (engram.query.serving), so questions read a table. Its column checks run in one pass
-- (tests/dbt/pattern_trends_is_well_formed.sql). The post-hook also makes the table macro
-- pattern_trends_for(keys): these rows for some patterns only (the copy's scoped sync).
{{ config(materialized='view', post_hook="{{ create_pattern_trends_for() }}") }}

{{ pattern_trends_rows() }}
