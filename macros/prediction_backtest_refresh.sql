{#
  prediction_backtest's refresh (DuckDB). A scored week's row depends on the input of that
  week and of every week before it (the running sums), so after a drop of recent events
  only the last weeks' rows change; recomputing the walk-forward over all history took
  ~23 s of a 10M-event refresh. The model is incremental on DuckDB:

  - prediction_backtest_input_digests_sql(): per week of the input
    (int_pattern_context_weeks__aggregated), a digest of its rows' count and newest write
    stamp (`written_at`, macros/write_stamp.sql). The input is incremental and stamps
    every row it writes, with a stamp newer than any before: a week whose rows were
    rewritten, added or deleted has another count or another newest stamp, and a week
    no write touched keeps both. Hashing every row's values instead (qualities rounded,
    since the table's double sums may differ in the last bits between builds) read all
    5.8M rows twice per 10M-event refresh.
  - the pre-hook deletes the rows of every week from the first whose digest differs from
    the one stored after the previous build (or that is new, or gone), and the model
    appends the weeks after the last one still held, computed from there on
    (prediction_backtest_rows with from_week); the weeks before keep their rows. The
    digests are compared once, in the pre-hook: every scored week before the first
    changed one is still held (the same digests, the same input so far), so the day after
    the last held week is where the recomputation starts.
  - the post-hook stores the digests, with the definition (the model's code, the macro's
    query and the vars it renders), in <intermediate>.prediction_backtest_input_digests.
    A changed definition, a missing digests table or --full-refresh recomputes every week.

  A value changed in place without a write of the model (an `update` by hand, which
  leaves the stamp) is not seen until `engram build --full-refresh` recomputes all.
#}

{% macro prediction_backtest_digests_relation() %}
    {%- set input = ref('int_pattern_context_weeks__aggregated') -%}
    {{ return(api.Relation.create(database=input.database, schema=input.schema,
                                  identifier='prediction_backtest_input_digests')) }}
{% endmacro %}

{#- What, besides the input, decides the rows: the model's code and the rendered query
    (vars included), the warehouse's catalog name left out (a copied file is the same),
    and how the digests are taken (digests of another form are not compared). `raw_code`:
    the model's code where the caller is not the model (the view's check, below). -#}
{% macro prediction_backtest_definition(raw_code=none) %}
    {%- set rendered = (raw_code or model.raw_code)
        ~ prediction_backtest_rows(from_week='from_week')
        ~ prediction_backtest_input_digests_sql() -%}
    {%- set database = ref('int_pattern_context_weeks__aggregated').database -%}
    {{ return(local_md5(rendered | replace(database, ''))) }}
{% endmacro %}

{% macro prediction_backtest_input_digests_sql() %}
select week, hash(count(*), max(written_at))::ubigint as digest
from {{ ref('int_pattern_context_weeks__aggregated') }}
group by week
{% endmacro %}

{#- The first week whose rows must be recomputed, as a date literal: date '9999-12-31'
    when nothing changed, date '0001-01-01' when everything must be (no digests stored,
    another definition). The pre-hook's, on an incremental run only, and the view's
    check's (prediction_backtest_checked_from, with the model's code as `raw_code`). -#}
{% macro prediction_backtest_first_changed_week(raw_code=none) %}
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
             where definition <> '{{ prediction_backtest_definition(raw_code) }}') as other_definitions,
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

{#
  Where the check of int_prediction_backtest__predicted
  (tests/dbt/int_prediction_backtest__predicted_is_well_formed.sql) starts on an
  incremental `engram build`: the first week whose input changed since the backtest's
  last run, as a date literal (date '9999-12-31' when none did); the view's rows before it
  are the ones that run checked, unchanged, and every row from it on may have moved
  (the global mean so far is every row's prior). The check runs before prediction_backtest
  (a test of its input), so the stored digests are still the last run's. None (check
  every row) without the watermark, on --full-refresh, outside DuckDB, or when the
  backtest must recompute every week anyway (no digests, another definition).
#}
{% macro prediction_backtest_checked_from() %}
    {%- if not execute or target.type != 'duckdb' or flags.FULL_REFRESH
        or not engram_changed_since() -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set week = prediction_backtest_first_changed_week(
        raw_code=graph_node('model', 'prediction_backtest').raw_code) -%}
    {{ return(none if week == "date '0001-01-01'" else week) }}
{% endmacro %}
