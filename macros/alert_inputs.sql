{#
  What pattern_alerts' findings are measured against, as CTEs, once for the two places
  that need them: int_pattern_alerts__found, which picks the findings, and the small
  tables pattern_alerts' view reads at read time (int_theme_recent_use,
  int_theme_replacements), so the view's numbers are those the findings were picked with.
  `weekly` and `patterns` name CTEs of the caller: weekly (pattern_id, week, n_events,
  last_occurred_at) from int_pattern_weeks__aggregated, patterns the not-merged-away rows
  of dim_patterns; `trends` those of pattern_trend_summary.
#}

{#- data_end (the newest event and its week: "now" for "unused for N weeks", never the
    wall clock) and theme_recent (each theme's events in the last var('stale_weeks')
    weeks of the data) -#}
{% macro alert_theme_recent_ctes(weekly, patterns) -%}
data_end as (
    -- the week of the newest event: the reference point for "unused for N weeks"
    select max(week) as last_week, max(last_occurred_at) as last_event_at
    from {{ weekly }}
),

theme_recent as (
    -- each theme's events in the last var('stale_weeks') weeks of the data
    select {{ patterns }}.theme_id, sum({{ weekly }}.n_events) as recent_events
    from {{ weekly }}
    inner join {{ patterns }} on {{ patterns }}.pattern_id = {{ weekly }}.pattern_id
    cross join data_end
    where {{ weekly }}.week > data_end.last_week - {{ weeks_interval(var('stale_weeks')) }}
    group by {{ patterns }}.theme_id
)
{%- endmacro %}

{#- ranked_candidates: each theme's patterns that could replace another, best first (the
    replacement named by a declining or stale finding is one of the first two) -#}
{% macro alert_candidate_ctes(patterns, trends) -%}
global_prior as (
    -- an exact sum (macros/exact_decimal.sql): the findings and int_theme_replacements
    -- compute it in two queries, and a replacement quoted at read time must carry the
    -- numbers it was picked with, to the last bit
    select
        cast(sum({{ exact_decimal('usage_count * success_rate') }}) / nullif(sum(usage_count), 0)
             as double) as mean_quality
    from {{ patterns }}
    where usage_count > 0
),

-- the best expected pattern of each theme for replacing another: most events-weighted
-- evidence of success (shrunk mean), not itself declining, with enough events
candidates as (
    select
        {{ patterns }}.theme_id,
        {{ patterns }}.pattern_id,
        {{ patterns }}.usage_count,
        {{ patterns }}.success_rate,
        {{ shrunk_mean(patterns ~ '.usage_count * ' ~ patterns ~ '.success_rate',
                       patterns ~ '.usage_count',
                       'global_prior.mean_quality', var('prediction_prior_strength')) }}
            as expected_quality
    from {{ patterns }}
    cross join global_prior
    left join {{ trends }} on {{ trends }}.pattern_id = {{ patterns }}.pattern_id
    where {{ patterns }}.usage_count >= {{ var('replacement_min_events') }}
        and coalesce({{ trends }}.direction, 'stable') <> 'declining'
),

ranked_candidates as (
    select
        *,
        row_number() over (
            partition by theme_id order by expected_quality desc, usage_count desc, pattern_id
        ) as candidate_rank
    from candidates
)
{%- endmacro %}
