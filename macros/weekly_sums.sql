{#
  The weekly sums every incremental aggregate keeps, grouped by `keys` and the event's
  calendar week: events, summed quality and squared quality (so means, variances and
  regressions come from sums, never a re-scan of events), the first and last event time,
  and max(loaded_at), the watermark the next incremental run starts from. `relation` is a
  CTE with event_week, occurred_at, outcome_quality, loaded_at and the key columns.
#}
{% macro weekly_sums(relation, keys) -%}
    select
        {% for key in keys -%}
        {{ key }},
        {% endfor -%}
        event_week as week,
        count(*) as n_events,
        sum(outcome_quality) as sum_quality,
        sum(outcome_quality * outcome_quality) as sum_quality_sq,
        min(occurred_at) as first_occurred_at,
        max(occurred_at) as last_occurred_at,
        max(loaded_at) as max_loaded_at
    from {{ relation }}
    group by {% for key in keys %}{{ key }}, {% endfor %}event_week
{%- endmacro %}
