{#
  pattern_alerts' query: the findings (int_pattern_alerts__found) with what moves at every
  append read beside them, and their words. A stale finding's weeks unused (its score)
  count to the newest event (int_theme_recent_use.last_event_at), its evidence quotes its
  theme's recent events, and a declining or stale finding's replacement is quoted with its
  events and expected quality (int_theme_replacements): stored with the findings, these
  made a +1% refresh rewrite 590k of 1.39M alerts. The evidence and message sentences are
  written here too, for the rows read: writing them for every finding was a third of the
  mart's build. The warehouse's pattern_alerts is a view of this; the post-hook makes the
  table macro pattern_alerts_served(), the same query over the tables named without the
  database, which the serving copy's view is (engram.query.serving.SERVED_VIEWS).
#}
{% macro pattern_alerts_rows(found, themes, recent, replacements) %}
with

resolved as (
    select
        found.kind,
        found.priority,
        found.pattern_id,
        found.related_pattern_id,
        found.theme_id,
        themes.theme_label,
        found.score,
        found.n_events,
        found.avg_quality,
        found.quality_slope_per_week,
        found.slope_t_stat,
        found.current_quality,
        found.similarity,
        case
            when found.kind = 'stale' then
                {{ whole_weeks_elapsed('found.last_active_at', 'recent.last_event_at') }}::integer
        end as weeks_unused,
        coalesce(found.related_n_events, replacement.usage_count) as related_n_events,
        replacement.expected_quality as related_expected_quality,
        found.times_recommended,
        found.times_used,
        found.first_recommended_at,
        found.last_used_at,
        recent.recent_events
    from {{ found }} as found
    left join {{ themes }} as themes on themes.theme_id = found.theme_id
    left join {{ recent }} as recent on recent.theme_id = found.theme_id
    left join {{ replacements }} as replacement
        on replacement.theme_id = found.theme_id
        and replacement.pattern_id = found.related_pattern_id
        and found.kind in ('declining', 'stale')
),

described as (
    select
        resolved.*,
        case resolved.kind
            when 'declining' then
                printf('quality %+.4f/week (t = %.1f) over %d events, mean %.2f, lately %.2f',
                       resolved.quality_slope_per_week, coalesce(resolved.slope_t_stat, 0),
                       resolved.n_events, resolved.avg_quality, resolved.current_quality)
            when 'near_duplicate' then
                printf('cosine %.3f to %s, same paraphrase group; %d vs %d events',
                       resolved.similarity, resolved.related_pattern_id, resolved.n_events,
                       resolved.related_n_events)
            when 'stale' then
                printf('unused for %d weeks (last %s) while its theme was used %d times in the last %d weeks',
                       resolved.weeks_unused,
                       coalesce({{ iso_date_text('resolved.last_used_at') }}, 'never'),
                       resolved.recent_events, {{ var('stale_weeks') }})
            when 'rising' then
                printf('quality %+.4f/week (t = %.1f) over %d events, mean %.2f',
                       resolved.quality_slope_per_week, coalesce(resolved.slope_t_stat, 0),
                       resolved.n_events, resolved.avg_quality)
            when 'unproven' then
                printf('recommended first %d times since %s, used %d times since (%d events in all)',
                       resolved.times_recommended,
                       {{ iso_date_text('resolved.first_recommended_at') }},
                       resolved.times_used, resolved.n_events)
        end as evidence,
        case
            when resolved.related_pattern_id is null then ''
            when resolved.kind = 'near_duplicate' then ''
            else printf(' Use %s instead (expected quality %.2f over %d events, same theme).',
                        resolved.related_pattern_id, resolved.related_expected_quality,
                        resolved.related_n_events)
        end as replacement_sentence
    from resolved
)

select
    md5(kind || ':' || pattern_id || ':' || coalesce(related_pattern_id, '')) as alert_id,
    kind,
    pattern_id,
    related_pattern_id,
    theme_id,
    theme_label,
    evidence,
    case kind
        when 'declining' then
            printf('Pattern %s is declining: %s.', pattern_id, evidence)
            || coalesce(nullif(replacement_sentence, ''),
                        ' No other pattern of its theme is expected to do better with '
                        || 'enough evidence; review it.')
        when 'near_duplicate' then
            printf('Pattern %s duplicates %s (%s). Keep %s, the one with more evidence: '
                   || 'engram merge-patterns %s %s',
                   pattern_id, related_pattern_id, evidence, related_pattern_id,
                   related_pattern_id, pattern_id)
        when 'stale' then
            printf('Pattern %s is stale: %s. Retire it or find out why it stopped being used.',
                   pattern_id, evidence) || replacement_sentence
        when 'rising' then
            printf('Pattern %s is rising: %s. Promote it: recommend it first for its theme.',
                   pattern_id, evidence)
        when 'unproven' then
            printf('Pattern %s is unproven: %s. Try it deliberately on a task it fits and '
                   || 'record the outcome, or stop recommending it (engram merge-patterns '
                   || 'into a proven pattern of its theme if it duplicates one).',
                   pattern_id, evidence)
    end as message,
    priority,
    -- a stale finding's strength is its weeks unused, counted here
    case when kind = 'stale' then weeks_unused::double else score end as score,
    n_events,
    avg_quality,
    quality_slope_per_week,
    slope_t_stat,
    current_quality,
    similarity,
    weeks_unused,
    related_n_events,
    related_expected_quality,
    times_recommended,
    times_used
from described
{% endmacro %}

{% macro create_pattern_alerts_served() %}
    {%- if target.type == 'duckdb' -%}
        create or replace macro {{ this.schema }}.pattern_alerts_served() as table
        {{ pattern_alerts_rows(
            ref('int_pattern_alerts__found').include(database=False),
            ref('pattern_themes').include(database=False),
            ref('int_theme_recent_use').include(database=False),
            ref('int_theme_replacements').include(database=False),
        ) }}
    {%- endif -%}
{% endmacro %}
