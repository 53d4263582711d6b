-- One row per pattern: what it says, its embedding, how often and how well it was used,
-- its cluster and that cluster's label. A view: int_patterns__unlabelled has every column
-- but the label (itself a view of int_patterns__profiled, which holds the usage and
-- cluster columns, and stg_patterns, which holds the text, type, metadata and the
-- embedding joined from the cache by description hash), and the label is the
-- description's row of int_pattern_texts__described, so that one new text moving a
-- group's label changes one row, not every member's (macros/dim_patterns_rows.sql). The
-- serving copy stores int_patterns__unlabelled as a table and this mart as the same view
-- over it (engram.query.serving).
-- The post-hook makes the table macro dim_patterns_served(): this view's query over the
-- copy's tables.
{{ config(materialized='view', post_hook="{{ create_dim_patterns_served() }}") }}

{{ dim_patterns_labelled() }}
