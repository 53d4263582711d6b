-- dim_patterns' rows without the group's label, with the description's hash that it is
-- joined by (macros/dim_patterns_rows.sql says why). A view: int_patterns__profiled holds
-- the usage and cluster columns, stg_patterns the text, type, metadata and embedding.
-- The serving copy stores it as a table, rewriting the rows of the patterns whose
-- profile or text changed; the post-hook makes the table macro
-- int_patterns__unlabelled_for(keys), these rows for some patterns only.
{{ config(materialized='view', post_hook="{{ create_int_patterns__unlabelled_for() }}") }}

{{ dim_patterns_rows() }}
