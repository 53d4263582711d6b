{#
  A model's column checks in one query: not null, unique, within a range, one of the
  accepted values. One row per broken rule (column, violation, n_rows: how many rows break it);
  the test's failures are the rows broken, summed over the rules.

  Why one test per model instead of a not_null / unique / accepted_range / accepted_values
  test per column: dbt spends ~15 ms of Python per test node (its context, compilation,
  events) whatever the query, and a 10M-event refresh ran 259 such column tests besides the
  unique ones: 4.0 s of its 33.6 s build (`dbt build` of a kept refresh state with and
  without them, back to back). One scan of the model per `where` scope also reads each
  column once instead of once per test.

  Arguments (each optional):
    not_null:        [column, ...]
    unique:          [column, ...]  n_rows: the rows beyond the first of each value (nulls
                     aside); a `where` scope sees only its rows' duplicates among themselves
    in_range:        {column: [min, max]}  inclusive; null for an open end; nulls pass
    accepted_values: {column: [value, ...]}  strings are quoted, numbers are not; nulls pass
  A test's `where` config scopes it as any generic test's (macros/changed_rows.sql).
#}
{% test columns_are_well_formed(model, not_null=[], unique=[], in_range={}, accepted_values={}) %}
{{ config(fail_calc='coalesce(sum(n_rows), 0)') }}
{%- set rules = [] -%}
{%- for column in not_null -%}
    {%- do rules.append((column, 'is null', column ~ ' is null', none)) -%}
{%- endfor -%}
{%- for column in unique -%}
    {#- the rows beyond the first of each value (nulls aside): a count, not a condition -#}
    {%- do rules.append((
        column, 'duplicate values', none,
        'count(' ~ column ~ ') - count(distinct ' ~ column ~ ')',
    )) -%}
{%- endfor -%}
{%- for column, bounds in in_range.items() -%}
    {%- set low, high = bounds[0], bounds[1] -%}
    {%- set outside = [] -%}
    {%- if low is not none %}{% do outside.append(column ~ ' < ' ~ low) %}{% endif -%}
    {%- if high is not none %}{% do outside.append(column ~ ' > ' ~ high) %}{% endif -%}
    {%- do rules.append((
        column,
        'outside [' ~ (low if low is not none else '-inf') ~ ', '
            ~ (high if high is not none else 'inf') ~ ']',
        column ~ ' is not null and (' ~ outside | join(' or ') ~ ')',
        none,
    )) -%}
{%- endfor -%}
{%- for column, values in accepted_values.items() -%}
    {%- set literals = [] -%}
    {%- for value in values -%}
        {%- if value is string -%}
            {%- do literals.append("'" ~ value | replace("'", "''") ~ "'") -%}
        {%- else -%}
            {%- do literals.append(value | string) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- do rules.append((
        column,
        'not one of ' ~ values | join(', '),
        column ~ ' is not null and ' ~ column ~ ' not in (' ~ literals | join(', ') ~ ')',
        none,
    )) -%}
{%- endfor -%}
with

counted as (
    select
    {%- for rule in rules %}
        {% if rule[2] is not none -%}
        sum(case when {{ rule[2] }} then 1 else 0 end)
        {%- else -%}
        {{ rule[3] }}
        {%- endif %} as rule_{{ loop.index }}
        {{- "," if not loop.last }}
    {%- endfor %}
    from {{ model }}
)

{% for rule in rules -%}
{% if not loop.first %}union all
{% endif -%}
select
    '{{ rule[0] }}' as column_name,
    '{{ rule[1] | replace("'", "''") }}' as violation,
    rule_{{ loop.index }} as n_rows
from counted
where rule_{{ loop.index }} > 0
{% endfor %}
{% endtest %}
