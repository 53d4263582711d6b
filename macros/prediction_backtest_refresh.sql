{#
  prediction_backtest's refresh (DuckDB). A scored week's row depends on the input of that
  week and of every week before it (the running sums), so after a drop of recent events
  only the last weeks' rows change; recomputing the walk-forward over all history took
  ~23 s of a 10M-event refresh. The model is incremental on DuckDB:

  - prediction_backtest_input_digests_sql(): per week of the input
    (int_pattern_context_weeks__aggregated), a digest of every input row of that week and
    all weeks before it (row count and a sum of row hashes, running). Qualities enter
    rounded to 9 decimals: the input is rebuilt each run and its sums of doubles may
    differ in the last bits from one build to the next, which must not count as a change.
  - the pre-hook deletes the rows of every week from the first whose digest differs from
    the one stored after the previous build (or that is new, or gone), and the model
    appends the weeks after the last one still held, computed from there on
    (prediction_backtest_rows with from_week); the weeks before keep their rows. The
    digests are compared once, in the pre-hook: every scored week before the first
    changed one is still held (same running digest, same input so far), so the day after
    the last held week is where the recomputation starts.
  - the post-hook stores the digests, with the definition (the model's code, the macro's
    query and the vars it renders), in <intermediate>.prediction_backtest_input_digests.
    A changed definition, a missing digests table or --full-refresh recomputes every week.

  A change smaller than the rounding (a quality moved by under 1e-9 in a cell, counts
  unchanged) is not seen until the next full refresh (the daily schedule runs a plain
  build; `engram build --full-refresh` recomputes all).
#}

{% macro prediction_backtest_digests_relation() %}
    {%- set input = ref('int_pattern_context_weeks__aggregated') -%}
    {{ return(api.Relation.create(database=input.database, schema=input.schema,
                                  identifier='prediction_backtest_input_digests')) }}
{% endmacro %}

{#- What, besides the input, decides the rows: the model's code and the rendered query
    (vars included), the warehouse's catalog name left out (a copied file is the same). -#}
{% macro prediction_backtest_definition() %}
    {%- set rendered = model.raw_code ~ prediction_backtest_rows(from_week='from_week') -%}
    {{ return(local_md5(rendered | replace(this.database, ''))) }}
{% endmacro %}

{% macro prediction_backtest_input_digests_sql() %}
with per_week as (
    select
        week,
        count(*) as n_rows,
        sum(hash(project_id, context_cluster_id, pattern_id, n_events,
                 round(sum_quality, 9), round(sum_sq_quality, 9))::hugeint) as row_hashes
    from {{ ref('int_pattern_context_weeks__aggregated') }}
    group by week
)

select
    week,
    hash(sum(n_rows) over through, sum(row_hashes) over through)::ubigint as digest
from per_week
window through as (order by week rows between unbounded preceding and current row)
{% endmacro %}

{#- The first week whose rows must be recomputed, as a date literal: date '9999-12-31'
    when nothing changed, date '0001-01-01' when everything must be (no digests stored,
    another definition). The pre-hook's, on an incremental run only. -#}
{% macro prediction_backtest_first_changed_week() %}
    {%- if not execute -%}
        {{ return("date '0001-01-01'") }}
    {%- endif -%}
    {%- set stored = prediction_backtest_digests_relation() -%}
    {%- if adapter.get_relation(database=stored.database, schema=stored.schema,
                                identifier=stored.identifier) is none -%}
        {{ return("date '0001-01-01'") }}
    {%- endif -%}
    {%- set query -%}
        with now as ({{ prediction_backtest_input_digests_sql() }})
        select
            (select count(*) from {{ stored }}
             where definition <> '{{ prediction_backtest_definition() }}') as other_definitions,
            (select min(coalesce(now.week, before.week))
             from now full outer join {{ stored }} as before on before.week = now.week
             where now.digest is distinct from before.digest)::varchar as first_changed
    {%- endset -%}
    {%- set row = run_query(query).rows[0] -%}
    {%- if row[0] > 0 -%}
        {{ return("date '0001-01-01'") }}
    {%- elif row[1] is none -%}
        {{ return("date '9999-12-31'") }}
    {%- endif -%}
    {{ return("date '" ~ row[1] ~ "'") }}
{% endmacro %}

{% macro prediction_backtest_forget_changed_weeks() %}
    {%- if target.type == 'duckdb' and is_incremental() -%}
        delete from {{ this }} where week >= {{ prediction_backtest_first_changed_week() }}
    {%- endif -%}
{% endmacro %}

{% macro prediction_backtest_save_digests() %}
    {%- if target.type == 'duckdb' -%}
        create or replace table {{ prediction_backtest_digests_relation() }} as
        select week, digest, '{{ prediction_backtest_definition() }}' as definition
        from ({{ prediction_backtest_input_digests_sql() }}) as digests
    {%- endif -%}
{% endmacro %}
