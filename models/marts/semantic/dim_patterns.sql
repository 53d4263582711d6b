-- One row per pattern: what it says, its embedding, how often and how well it was used,
-- its cluster and that cluster's label. A view: int_patterns__profiled holds the usage
-- and cluster columns, the text, type, metadata and embedding come from stg_patterns
-- (which joins the embedding from the cache by description hash), and the label from
-- int_pattern_texts__described by description hash, so the warehouse stores each
-- distinct description's vector and label once instead of once per pattern, and each
-- text once (macros/dim_patterns_rows.sql says why the label is joined). The serving
-- copy materializes it whole (engram.query.serving), so queries read a table.
-- The post-hook also makes the table macro dim_patterns_for(keys): these rows for some
-- patterns only (the copy's scoped sync, macros/dim_patterns_rows.sql).
{{ config(materialized='view', post_hook="{{ create_dim_patterns_for() }}") }}

{{ dim_patterns_rows() }}
