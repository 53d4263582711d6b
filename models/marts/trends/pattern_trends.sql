-- One row per pattern per calendar week (Monday, UTC) from the pattern's first event week to
-- its last, empty weeks filled in. Deterministic: no now()-relative window; the span is the
-- data's own. A view (issue 18): the gap-filled rows are most of its 33M rows at 10M events
-- and took 286 MiB of the warehouse, re-derived from int_pattern_weeks__aggregated (a
-- full read took 15 s at 10M events on a loaded machine). The serving copy holds it as the
-- same view over its copy of the weekly sums: the post-hook makes the table macro
-- pattern_trends_served(), this query named without the database, which the copy's view
-- is (engram.query.serving.SERVED_VIEWS); a question reads one pattern's weeks. Its
-- column checks run in one pass (tests/dbt/pattern_trends_is_well_formed.sql).
{{ config(materialized='view', post_hook="{{ create_pattern_trends_served() }}") }}

{{ pattern_trends_rows() }}
