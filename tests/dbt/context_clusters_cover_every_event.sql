-- Every distinct task text is in one cluster and every event is counted once.
-- Shown in Dagster as an asset check of context_clusters (the test reads several models).
{{ config(meta={'dagster': {'ref': {'name': 'context_clusters'}}}) }}
with

totals as (
    select
        (select sum(n_contexts) from {{ ref('context_clusters') }}) as clustered_contexts,
        (select count(*) from {{ ref('stg_contexts') }}) as contexts,
        (select sum(n_events) from {{ ref('context_clusters') }}) as clustered_events,
        (select count(*) from {{ ref('stg_usage_events') }}) as events
)

select *
from totals
where clustered_contexts <> contexts or clustered_events <> events
