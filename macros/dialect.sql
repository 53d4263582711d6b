{#
  Dialect differences between the two engines the project builds on (docs/scale-out.md):
  DuckDB (the embedded default, the `dev` target) and Spark SQL (the `spark` target,
  dbt-spark). Each model keeps one source of truth and calls these macros where the two
  SQL dialects spell the same thing differently; `default__` is the DuckDB spelling the
  models used before, unchanged, so the DuckDB build is the same query as before.
  Every macro here returns an expression (or a keyword), never a whole query.
#}

{#- The Monday starting the calendar week of a timestamp, as a date. -#}
{% macro week_start(ts) -%}
    {{ return(adapter.dispatch('week_start')(ts)) }}
{%- endmacro %}
{% macro default__week_start(ts) -%}
    date_trunc('week', {{ ts }})::date
{%- endmacro %}
{% macro spark__week_start(ts) -%}
    cast(date_trunc('WEEK', {{ ts }}) as date)
{%- endmacro %}

{#- Whole weeks from date `start` to date `stop` (both Mondays in the models: exact). -#}
{% macro weeks_between(start, stop) -%}
    {{ return(adapter.dispatch('weeks_between')(start, stop)) }}
{%- endmacro %}
{% macro default__weeks_between(start, stop) -%}
    date_diff('day', {{ start }}, {{ stop }}) // 7
{%- endmacro %}
{% macro spark__weeks_between(start, stop) -%}
    div(datediff({{ stop }}, {{ start }}), 7)
{%- endmacro %}

{#- Complete weeks elapsed from timestamp `start` to timestamp `stop` (truncated). -#}
{% macro whole_weeks_elapsed(start, stop) -%}
    {{ return(adapter.dispatch('whole_weeks_elapsed')(start, stop)) }}
{%- endmacro %}
{% macro default__whole_weeks_elapsed(start, stop) -%}
    date_sub('week', {{ start }}, {{ stop }})
{%- endmacro %}
{% macro spark__whole_weeks_elapsed(start, stop) -%}
    timestampdiff(WEEK, {{ start }}, {{ stop }})
{%- endmacro %}

{#- An interval of `n` weeks, to add to or subtract from a date or timestamp. -#}
{% macro weeks_interval(n) -%}
    {{ return(adapter.dispatch('weeks_interval')(n)) }}
{%- endmacro %}
{% macro default__weeks_interval(n) -%}
    to_weeks({{ n }})
{%- endmacro %}
{% macro spark__weeks_interval(n) -%}
    make_dt_interval(({{ n }}) * 7)
{%- endmacro %}

{#- One row per Monday from `first_week` to `last_week` (dates): a generator in a select. -#}
{% macro weekly_dates(first_week, last_week) -%}
    {{ return(adapter.dispatch('weekly_dates')(first_week, last_week)) }}
{%- endmacro %}
{% macro default__weekly_dates(first_week, last_week) -%}
    cast(unnest(generate_series({{ first_week }}, {{ last_week }}, interval 7 day)) as date)
{%- endmacro %}
{% macro spark__weekly_dates(first_week, last_week) -%}
    explode(sequence({{ first_week }}, {{ last_week }}, interval 7 day))
{%- endmacro %}

{#- One row per element of a list column: a generator in a select. -#}
{% macro unnest_list(list) -%}
    {{ return(adapter.dispatch('unnest_list')(list)) }}
{%- endmacro %}
{% macro default__unnest_list(list) -%}
    unnest({{ list }})
{%- endmacro %}
{% macro spark__unnest_list(list) -%}
    explode({{ list }})
{%- endmacro %}

{#- The list without repeated elements. -#}
{% macro list_unique(list) -%}
    {{ return(adapter.dispatch('list_unique')(list)) }}
{%- endmacro %}
{% macro default__list_unique(list) -%}
    list_distinct({{ list }})
{%- endmacro %}
{% macro spark__list_unique(list) -%}
    array_distinct({{ list }})
{%- endmacro %}

{#- Number of elements of a list. -#}
{% macro list_length(list) -%}
    {{ return(adapter.dispatch('list_length')(list)) }}
{%- endmacro %}
{% macro default__list_length(list) -%}
    len({{ list }})
{%- endmacro %}
{% macro spark__list_length(list) -%}
    size({{ list }})
{%- endmacro %}

{#- `value` of the row with the largest `ordering` in the group. -#}
{% macro value_at_max(value, ordering) -%}
    {{ return(adapter.dispatch('value_at_max')(value, ordering)) }}
{%- endmacro %}
{% macro default__value_at_max(value, ordering) -%}
    arg_max({{ value }}, {{ ordering }})
{%- endmacro %}
{% macro spark__value_at_max(value, ordering) -%}
    max_by({{ value }}, {{ ordering }})
{%- endmacro %}

{#- A struct of named fields, [(name, expression), ...]; structs compare field by field, so
    min() of one picks a row by several keys in one aggregate. -#}
{% macro struct_of(fields) -%}
    {{ return(adapter.dispatch('struct_of')(fields)) }}
{%- endmacro %}
{% macro default__struct_of(fields) -%}
    struct_pack({% for name, expr in fields %}{{ name }} := {{ expr }}{{ ', ' if not loop.last }}{% endfor %})
{%- endmacro %}
{% macro spark__struct_of(fields) -%}
    named_struct({% for name, expr in fields %}'{{ name }}', {{ expr }}{{ ', ' if not loop.last }}{% endfor %})
{%- endmacro %}

{#- The integer type the regression sums' products are exact in (n*sxx - sx^2). -#}
{% macro exact_integer_type() -%}
    {{ return(adapter.dispatch('exact_integer_type')()) }}
{%- endmacro %}
{% macro default__exact_integer_type() -%}
    hugeint
{%- endmacro %}
{% macro spark__exact_integer_type() -%}
    decimal(38, 0)
{%- endmacro %}

{#- The join keywords for "rows with a match" and "rows without a match". -#}
{% macro semi_join() -%}
    {{ return(adapter.dispatch('semi_join')()) }}
{%- endmacro %}
{% macro default__semi_join() -%}
    semi join
{%- endmacro %}
{% macro spark__semi_join() -%}
    left semi join
{%- endmacro %}

{% macro anti_join() -%}
    {{ return(adapter.dispatch('anti_join')()) }}
{%- endmacro %}
{% macro default__anti_join() -%}
    anti join
{%- endmacro %}
{% macro spark__anti_join() -%}
    left anti join
{%- endmacro %}

{#- A date or timestamp as 'YYYY-MM-DD' text. -#}
{% macro iso_date_text(ts) -%}
    {{ return(adapter.dispatch('iso_date_text')(ts)) }}
{%- endmacro %}
{% macro default__iso_date_text(ts) -%}
    strftime({{ ts }}, '%Y-%m-%d')
{%- endmacro %}
{% macro spark__iso_date_text(ts) -%}
    date_format({{ ts }}, 'yyyy-MM-dd')
{%- endmacro %}

{#- The text type, for typed nulls (`null::varchar`). -#}
{% macro text_type() -%}
    {{ return(adapter.dispatch('text_type')()) }}
{%- endmacro %}
{% macro default__text_type() -%}
    varchar
{%- endmacro %}
{% macro spark__text_type() -%}
    string
{%- endmacro %}

{#- The type of a timestamp without a time zone, for typed nulls (a finding without a
    date): Spark's `timestamp` is its local-time-zone type, while the events' times are
    timestamp_ntz there, so a union of the two would turn every time zone-aware. -#}
{% macro timestamp_type() -%}
    {{ return(adapter.dispatch('timestamp_type')()) }}
{%- endmacro %}
{% macro default__timestamp_type() -%}
    timestamp
{%- endmacro %}
{% macro spark__timestamp_type() -%}
    timestamp_ntz
{%- endmacro %}

{#- How an incremental model is materialized: incremental (delete+insert) on DuckDB; a full
    table on Spark, whose plain parquet tables have no delete+insert (a cluster with Delta
    would use `merge`; docs/scale-out.md). -#}
{% macro incremental_materialization() -%}
    {{ return('table' if target.type == 'spark' else 'incremental') }}
{%- endmacro %}

{#- True when text `value` begins with `prefix`. -#}
{% macro text_starts_with(value, prefix) -%}
    {{ return(adapter.dispatch('text_starts_with')(value, prefix)) }}
{%- endmacro %}
{% macro default__text_starts_with(value, prefix) -%}
    starts_with({{ value }}, {{ prefix }})
{%- endmacro %}
{% macro spark__text_starts_with(value, prefix) -%}
    startswith({{ value }}, {{ prefix }})
{%- endmacro %}

{#- Days from date `start` to date `stop`. -#}
{% macro days_between(start, stop) -%}
    {{ return(adapter.dispatch('days_between')(start, stop)) }}
{%- endmacro %}
{% macro default__days_between(start, stop) -%}
    date_diff('day', {{ start }}, {{ stop }})
{%- endmacro %}
{% macro spark__days_between(start, stop) -%}
    datediff({{ stop }}, {{ start }})
{%- endmacro %}

{#- The dot product of a float list with itself, in double precision. -#}
{% macro self_dot_product(list) -%}
    {{ return(adapter.dispatch('self_dot_product')(list)) }}
{%- endmacro %}
{% macro default__self_dot_product(list) -%}
    list_dot_product({{ list }}::double[], {{ list }}::double[])
{%- endmacro %}
{% macro spark__self_dot_product(list) -%}
    aggregate(transform({{ list }}, x -> cast(x as double) * cast(x as double)),
              cast(0 as double), (total, x) -> total + x)
{%- endmacro %}

{#- A timestamp before every real one: "no watermark yet" (changed-row tests, incremental
    scopes). DuckDB has '-infinity'; Spark rejects that literal, and its earliest
    timestamp, year 1, is before any loaded_at just as well. -#}
{% macro earliest_timestamp() -%}
    {{ return(adapter.dispatch('earliest_timestamp')()) }}
{%- endmacro %}
{% macro default__earliest_timestamp() -%}
    timestamp '-infinity'
{%- endmacro %}
{% macro spark__earliest_timestamp() -%}
    timestamp '0001-01-01 00:00:00'
{%- endmacro %}
