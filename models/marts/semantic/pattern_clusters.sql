-- Every pattern in exactly one paraphrase group and one theme; cluster_* are the
-- paraphrase level under their older names. A view: which group and theme is
-- int_patterns__clustered's (per pattern, written for new patterns only), what they look
-- like int_pattern_texts__described's (per distinct description, ~24k rows at 1M
-- patterns); the query is macros/pattern_clusters_rows.sql. The post-hook makes the table
-- macro pattern_clusters_served(), which the serving copy's view of this mart is.
-- depends_on: {{ ref('int_patterns__clustered') }}
-- depends_on: {{ ref('int_pattern_texts__described') }}
{{ config(materialized='view', post_hook="{{ create_pattern_clusters_served() }}") }}

{{ pattern_clusters_rows(ref('int_patterns__clustered'), ref('int_pattern_texts__described')) }}
