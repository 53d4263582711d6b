{#- The one embedding variant (model:backend tag) the marts read: the tag of the newest
    completed embed pass (raw.embedding_runs). The cache may hold vectors of several
    backends for one text; reading one tag keeps vectors of two backends out of one mart.
    A warehouse embedded before passes were recorded falls back to its newest vector's tag.
    A macro, not only a model, so that stg_patterns and stg_contexts can be run alone
    (`dbt run --select stg_contexts`); stg_embedding_model exposes it to queries. -#}
{% macro active_embedding_model() %}
    with

    runs as (
        select model, finished_at from {{ source('raw', 'embedding_runs') }}
    ),

    newest_run as (
        select model as embedding_model, finished_at as embedded_at, 1 as priority
        from runs
        order by finished_at desc, model
        limit 1
    ),

    newest_vector as (
        select model as embedding_model, embedded_at, 2 as priority
        from {{ source('raw', 'embeddings') }}
        order by embedded_at desc, model
        limit 1
    ),

    candidates as (
        select * from newest_run
        union all
        select * from newest_vector
    )

    select embedding_model, embedded_at
    from candidates
    order by priority
    limit 1
{% endmacro %}
