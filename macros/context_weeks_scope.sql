{#
  int_pattern_context_weeks__aggregated's incremental scope (issue 18). The model is a
  sum per (project, context cluster, pattern, week); a refresh recomputes only the
  (pattern, week) groups that gained events since the model's own watermark (the newest
  loaded_at it had processed, kept in <model>__watermark; the context map it used is in
  <model>__contexts), from
  all of those groups' events, and delete+insert on [pattern_id, week] replaces them. Rows
  of other groups can change only when
    - a merge was recorded or undone (events then count toward another pattern),
    - a task text already counted moved to another context cluster (a re-clustering, or
      a text whose events were loaded before it was clustered), or
    - a pattern became known whose events were loaded before it (they were left out);
  the first two recompute every row (context_weeks_recompute_all), the third adds the
  pattern's every week to the scope. The two state tables are written by the model's
  post-hooks, inside its transaction, so a run killed before its commit leaves the
  previous rows and the previous state together.
#}

{#- The previous run's watermark as a SQL literal, or none (macros/own_watermark.sql): not
    incremental, DuckDB only, no state yet (the first run with this code). -#}
{% macro context_weeks_watermark() -%}
    {{ return(own_watermark(also=['contexts'])) }}
{%- endmacro %}

{#- True when this run must recompute every row (see above); also when there is no
    watermark. Only called on incremental runs (by the pre-hook and by the model). The
    events are read only when some clustered task text is new to the saved map. -#}
{% macro context_weeks_recompute_all() -%}
    {%- if own_watermark_recompute_all(also=['contexts']) -%}
        {{ return(true) }}  {#- no watermark, or a merge since (macros/own_watermark.sql) -#}
    {%- endif -%}
    {%- set since = context_weeks_watermark() -%}
    {%- set sql -%}
        -- a text counted before, now in another cluster or none
        select count(*)
        from {{ own_watermark_table('contexts') }} as saved
        left join {{ ref('int_contexts__clustered') }} as now
            on now.context_hash = saved.context_hash
        where now.context_cluster_id is distinct from saved.context_cluster_id
    {%- endset -%}
    {%- if run_query(sql).columns[0].values()[0] > 0 -%}
        {{ return(true) }}
    {%- endif -%}
    {%- set new_texts -%}
        select context_hash from {{ ref('int_contexts__clustered') }}
        except
        select context_hash from {{ own_watermark_table('contexts') }}
    {%- endset -%}
    {%- if run_query("select count(*) from (" ~ new_texts ~ ")").columns[0].values()[0] == 0 -%}
        {{ return(false) }}
    {%- endif -%}
    {#- a text clustered since, whose events include some counted before (in -1) -#}
    {%- set late -%}
        select count(*) from (
            select 1 from {{ ref('stg_usage_events') }}
            where loaded_at <= {{ since }} and context_hash in ({{ new_texts }})
            limit 1
        )
    {%- endset -%}
    {{ return(run_query(late).columns[0].values()[0] > 0) }}
{%- endmacro %}

{#- The post-hooks: the watermark and the context map this run used, each replaced; the
    watermark's row also says whether this run recomputed every row (recomputed_all), so
    that the model's scoped tests check every row then (macros/changed_rows.sql,
    recomputed_whole). -#}
{% macro save_context_weeks_state(part) -%}
    {%- if target.type != 'duckdb' -%}
        {{ return('') }}
    {%- endif -%}
    {%- if part == 'watermark' -%}
    {#- rendered after the model's query ran and before the contexts hook: the saved state
        is still the previous run's, so this asks what the pre-hook asked -#}
    {{ save_own_watermark(not is_incremental() or context_weeks_recompute_all()) }}
    {%- else -%}
    create or replace table {{ own_watermark_table('contexts') }} as
    select context_hash, context_cluster_id from {{ ref('int_contexts__clustered') }}
    {%- endif -%}
{%- endmacro %}
