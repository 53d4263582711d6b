-- pattern_alerts (a view: its words and the numbers an append moves are computed at read
-- time over int_pattern_alerts__found), checked in one pass: every finding has evidence
-- and a message (a number missing from a sentence's printf would leave it null), and a
-- stale one its weeks unused (its theme's recent use read beside it).
-- Each row returned is a violation, with the reason. The findings' keys are checked on
-- int_pattern_alerts__found. On an incremental `engram build` it checks only the alerts
-- of the patterns whose weekly sums that build recomputed (changed_patterns(),
-- macros/changed_rows.sql); a plain `dbt build`, the daily schedule and --full-refresh
-- check every alert.
-- depends_on: {{ ref('pattern_alerts') }}
{%- set changed = changed_patterns() %}
with

alerts as (
    select kind, pattern_id, evidence, message, weeks_unused, score
    from {{ ref('pattern_alerts') }}
    {%- if changed %}
    where pattern_id in {{ changed }}
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
