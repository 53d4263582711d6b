{#- A double as DECIMAL(38, 18), so that sums of it are exact and do not depend on the order
    rows arrive in. DuckDB's parallel sum() of doubles combines the threads' partial sums in
    whatever order they finish, so the same query over the same rows can differ in the last
    bits from one run to the next. A table fixes its values once, when it is built; a view
    re-runs its sums on every read (the build's tests, the serving copy's publish, a
    compaction's check), so the views that sum qualities (int_pattern_predictions__posterior,
    pattern_project_predictions, int_prediction_backtest__predicted) sum exact decimals: the
    same rows give the same bits, every read. 18 decimals: qualities lie in [0, 1] and
    sums of 10M events stay far below the 20 integer digits left. Arithmetic on the result
    with a double gives a double again. On Spark the double is kept: Spark divides decimals
    into decimals and would cut the scale (to 6 digits at this precision). -#}
{% macro exact_decimal(expr) -%}
    {{ return(adapter.dispatch('exact_decimal')(expr)) }}
{%- endmacro %}
{% macro default__exact_decimal(expr) -%}
    cast({{ expr }} as decimal(38, 18))
{%- endmacro %}
{% macro spark__exact_decimal(expr) -%}
    {{ expr }}
{%- endmacro %}
