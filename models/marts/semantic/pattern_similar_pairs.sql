-- Each pattern's nearest other patterns with cosine >= var('similarity_threshold'), at
-- most var('similar_pairs_k'). A view: the lists are int_pattern_texts__neighbors' (one
-- per distinct description, k + 1 long), each pattern's its description's minus itself
-- (macros/pattern_similar_pairs_rows.sql); which description a pattern has is
-- int_patterns__clustered's. The post-hook makes the table macro
-- pattern_similar_pairs_served(), which the serving copy's view of this mart is.
-- depends_on: {{ ref('int_patterns__clustered') }}
-- depends_on: {{ ref('int_pattern_texts__neighbors') }}
{{ config(materialized='view', post_hook="{{ create_pattern_similar_pairs_served() }}") }}

{{ pattern_similar_pairs_rows(ref('int_patterns__clustered'), ref('int_pattern_texts__neighbors')) }}
