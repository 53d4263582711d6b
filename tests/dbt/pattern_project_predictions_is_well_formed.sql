-- pattern_project_predictions, checked in one pass (it is a view: eleven column tests
-- re-ran its four-level query eleven times): one row per (project, context cluster,
-- pattern), no key, label or count null, n_events at least 1, the other projects'
-- counts non-negative, and the raw mean and the prediction within [0, 1]. Each row
-- returned is a violation, with the reason.
-- On an incremental `engram build` it checks only the patterns whose sums that build
-- recomputed (changed_patterns(), macros/changed_rows.sql), from the view's own query scoped
-- to them (macros/pattern_project_predictions_rows.sql); a plain `dbt build`, the daily
-- schedule and --full-refresh check every pattern.
-- depends_on: {{ ref('pattern_project_predictions') }}
{%- set changed = changed_patterns() %}
with

predictions as (
    select
        *,
        count(*) over (partition by project_id, context_cluster_id, pattern_id) as copies
    from {% if changed %}({{ pattern_project_predictions_rows(changed) }}) as scoped{% else %}{{ ref('pattern_project_predictions') }}{% endif %}
),

checked as (
    select
        project_id,
        context_cluster_id,
        pattern_id,
        case
            when copies > 1 then 'duplicate (project_id, context_cluster_id, pattern_id)'
            when project_id is null or context_cluster_id is null or pattern_id is null
                or context_cluster_label is null
                then 'a key or the label is null'
            when n_events is null or other_n_events is null or other_projects is null
                then 'a count is null'
            when n_events < 1 then 'n_events below 1'
            when other_n_events < 0 or other_projects < 0
                then 'other_n_events or other_projects below 0'
            when mean_quality is null or predicted_success is null
                then 'mean_quality or predicted_success is null'
            when mean_quality not between 0 and 1 or predicted_success not between 0 and 1
                then 'mean_quality or predicted_success outside [0, 1]'
        end as violation
    from predictions
)

select * from checked where violation is not null
