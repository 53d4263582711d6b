-- One row per actionable finding about the pattern library (issue 16): a pattern in
-- decline (with the replacement to use instead), a near-duplicate (with the one to keep),
-- a stale pattern (unused while its theme is still in use), a rising one (promote it)
-- and an unproven one (recommended first often, used rarely since: try it or stop).
-- A view: which findings there are is int_pattern_alerts__found's (the rules, stored);
-- what moves with every append (a stale finding's weeks unused, a replacement's numbers,
-- a theme's recent use) and the sentences are read beside them at read time
-- (macros/pattern_alerts_rows.sql). The post-hook makes the table macro
-- pattern_alerts_served(), which the serving copy's view of this mart is.
-- depends_on: {{ ref('int_pattern_alerts__found') }}
-- depends_on: {{ ref('int_theme_recent_use') }}
-- depends_on: {{ ref('int_theme_replacements') }}
-- depends_on: {{ ref('pattern_themes') }}
{{ config(materialized='view', post_hook="{{ create_pattern_alerts_served() }}") }}

{{ pattern_alerts_rows(
    ref('int_pattern_alerts__found'),
    ref('pattern_themes'),
    ref('int_theme_recent_use'),
    ref('int_theme_replacements'),
) }}
