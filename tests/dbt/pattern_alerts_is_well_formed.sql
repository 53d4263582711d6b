-- pattern_alerts (a view: its words and the numbers an append moves are computed at read
-- time over int_pattern_alerts__found), checked in one pass: every finding has evidence
-- and a message (a number missing from a sentence's printf would leave it null), and a
-- stale one its weeks unused (its theme's recent use read beside it).
-- Each row returned is a violation, with the reason. The findings' keys are checked on
-- int_pattern_alerts__found. On an incremental `engram build` it checks only the alerts
-- of the patterns whose weekly sums that build recomputed (changed_patterns(),
-- macros/changed_rows.sql); a plain `dbt build`, the daily schedule and --full-refresh
-- check every alert.
-- Shown in Dagster as an asset check of pattern_alerts (the scoped query reads its inputs).
{{ config(meta={'dagster': {'ref': {'name': 'pattern_alerts'}}}) }}
-- depends_on: {{ ref('pattern_alerts') }}
-- depends_on: {{ ref('int_pattern_alerts__found') }}
-- depends_on: {{ ref('pattern_themes') }}
-- depends_on: {{ ref('int_theme_recent_use') }}
-- depends_on: {{ ref('int_theme_replacements') }}
{%- set changed = changed_patterns() %}
with

alerts as (
    select kind, pattern_id, evidence, message, weeks_unused, score
    {%- if changed %}
    -- the view's own query over those patterns' findings: DuckDB does not push a filter
    -- on the view below its sentences, so filtering the view worded every finding
    from ({{ pattern_alerts_rows(
        '(select * from ' ~ ref('int_pattern_alerts__found') ~ ' where pattern_id in '
            ~ changed ~ ')',
        ref('pattern_themes'),
        ref('int_theme_recent_use'),
        ref('int_theme_replacements'),
    ) }}) as scoped
    {%- else %}
    from {{ ref('pattern_alerts') }}
    {%- endif %}
),

checked as (
    select
        kind,
        pattern_id,
        case
            when evidence is null or message is null then 'evidence or message is null'
            when kind = 'stale' and (weeks_unused is null or score is null)
                then 'a stale alert without its weeks unused'
        end as violation
    from alerts
)

select * from checked where violation is not null
