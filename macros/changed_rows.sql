{#
  Expensive data tests scoped to changed rows (README "Incremental builds"). A test whose
  `where` config names __engram_changed_since__ (e.g. "loaded_at > __engram_changed_since__")
  checks, on an incremental `engram build`, only the rows loaded after the previous build:
  engram.build passes that build's loaded_at watermark as var('engram_changed_since').
  Without the var (a plain `dbt build`, the daily Dagster schedule) or on --full-refresh the
  placeholder becomes earliest_timestamp() (DuckDB: timestamp '-infinity'; macros/dialect.sql)
  and the test checks every row. dbt does not
  let a custom macro fill a test's config, so the placeholder is replaced here, in dbt's
  own hook for the `where` config. A scoped unique test can miss a duplicate between an old
  and a new row; the full runs catch it. `where: "__engram_refreshed_rows__"` scopes a
  model that stamps the rows it rewrites instead (refreshed_rows() below), and
  `where: "__engram_changed_patterns__"` a pattern-keyed model rewritten per changed pattern
  (the rows of changed_patterns() below; every row when that is none).
#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where') -%}
    {%- if where -%}
        {%- if '__engram_refreshed_rows__' in where -%}
            {%- set where = where | replace('__engram_refreshed_rows__', refreshed_rows(relation)) -%}
        {%- endif -%}
        {%- if '__engram_changed_patterns__' in where -%}
            {%- set changed = changed_patterns(from_graph=true) -%}
            {%- if changed and recomputed_whole(relation) -%}
                {%- set changed = none -%}
            {%- endif -%}
            {%- set where = where | replace('__engram_changed_patterns__',
                'pattern_id in ' ~ changed if changed else 'true') -%}
        {%- endif -%}
        {%- if '__engram_changed_since__' in where -%}
            {%- set since = engram_changed_since() -%}
            {%- if since and not flags.FULL_REFRESH -%}
                {%- set where = where | replace('__engram_changed_since__', "timestamp '" ~ since ~ "'") -%}
            {%- else -%}
                {%- set where = where | replace('__engram_changed_since__', earliest_timestamp()) -%}
            {%- endif -%}
        {%- endif -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ where }}) dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}

{#
  The patterns whose weekly sums this build recomputed, as a subquery of pattern_ids, for
  checks too expensive to run over every pattern on each refresh (a view's one-pass check:
  tests/dbt/pattern_trends_is_well_formed.sql). None without var('engram_changed_since'),
  on --full-refresh, or when a merge was recorded or undone since that watermark: then the
  caller checks everything. int_pattern_weeks__aggregated's max_loaded_at is the newest
  load among a (pattern, week) group's events, so a group this build recomputed is newer
  than the previous build's watermark (engram.build.changed_since); a merge recomputes
  groups from events loaded long ago, hence no scope then.
#}
{% macro changed_patterns(from_graph=false) -%}
    {#- from_graph: for a generic test (the `where` placeholder), which cannot declare
        `-- depends_on`, so ref() would be rejected there as an undeclared dependency: the
        two relations are then looked up in the project's graph by name instead
        (graph_relation below), wherever the project's schemas put them. -#}
    {%- set since = engram_changed_since() -%}
    {%- if not since or flags.FULL_REFRESH -%}
        {{ return(none) }}
    {%- endif -%}
    {%- if not from_graph -%}
        {%- set weeks = ref('int_pattern_weeks__aggregated') -%}
        {%- set supersessions = source('raw', 'pattern_supersessions') -%}
    {%- elif not execute -%}
        {{ return(none) }}  {#- parsing: the graph is not there yet, and nothing runs -#}
    {%- else -%}
        {%- set weeks = graph_relation('model', 'int_pattern_weeks__aggregated') -%}
        {%- set supersessions = graph_relation('source', 'pattern_supersessions', 'raw') -%}
    {%- endif -%}
    {%- if execute -%}
        {%- set merges -%}
            select count(*) from {{ supersessions }}
            where {{ merge_changed_after("timestamp '" ~ since ~ "'") }}
        {%- endset -%}
        {%- if run_query(merges).columns[0].values()[0] > 0 -%}
            {{ return(none) }}
        {%- endif -%}
    {%- endif -%}
    {{ return("(select distinct pattern_id from " ~ weeks
        ~ " where max_loaded_at > timestamp '" ~ since ~ "')") }}
{%- endmacro %}

{#
  Whether the tested model's last run recomputed every row, as it records in its
  `<model>__watermark` side table (`recomputed_all`; int_pattern_context_weeks__aggregated:
  macros/context_weeks_scope.sql): after a merge or a re-clustering an incremental run
  rewrites every row, so its `__engram_changed_patterns__` tests check every row too. A
  model without that table counts as recomputed whole (every row checked). The table is
  looked up where macros/own_watermark.sql keeps it, beside int_pattern_weeks__aggregated
  (a mart's too, pattern_trend_summary's), whose schema comes from dbt's graph: a generic
  test's `where` cannot ref() it.
#}
{% macro recomputed_whole(relation) -%}
    {%- if not execute or target.type != 'duckdb' -%}
        {{ return(true) }}
    {%- endif -%}
    {%- set side = relation.identifier ~ '__watermark' -%}
    {%- set schema = graph_node('model', 'int_pattern_weeks__aggregated').schema -%}
    {%- set exists_sql -%}
        select count(*) from information_schema.columns
        where table_catalog = '{{ relation.database }}' and table_schema = '{{ schema }}'
            and table_name = '{{ side }}' and column_name = 'recomputed_all'
    {%- endset -%}
    {%- if run_query(exists_sql).columns[0].values()[0] == 0 -%}
        {{ return(true) }}
    {%- endif -%}
    {%- set flag_sql -%}
        select coalesce(bool_or(recomputed_all), true)
        from {{ adapter.quote(schema) }}.{{ adapter.quote(side) }}
    {%- endset -%}
    {{ return(run_query(flag_sql).columns[0].values()[0]) }}
{%- endmacro %}

{#
  The relation of a model or source of this project, by name, from dbt's `graph` (its
  relation_name: database, schema and identifier as the build names them), for macros
  that run where ref() and source() would be rejected (generic tests' `where`); its
  graph node (graph_node: .schema, .database, ...) likewise. A compilation error names
  what is missing.
#}
{% macro graph_relation(resource_type, name, source_name=none) -%}
    {{ return(graph_node(resource_type, name, source_name).relation_name) }}
{%- endmacro %}

{% macro graph_node(resource_type, name, source_name=none) -%}
    {%- set nodes = graph.sources.values() if resource_type == 'source' else graph.nodes.values() -%}
    {%- for node in nodes -%}
        {%- if node.resource_type == resource_type and node.name == name
              and (source_name is none or node.source_name == source_name) -%}
            {{ return(node) }}
        {%- endif -%}
    {%- endfor -%}
    {{ exceptions.raise_compiler_error(
        "engram: no " ~ resource_type ~ " named " ~ name ~ " in this project's graph") }}
{%- endmacro %}

{#
  The previous build's watermark: var('engram_changed_since') when given (`dbt build --vars
  '{engram_changed_since: ...}'`), else $ENGRAM_CHANGED_SINCE, which `engram build` sets.
  The environment rather than --vars because dbt parses the whole project again whenever
  --vars change, and the watermark changes with every build (8.5 s against 3.8 s with
  partial parsing here). Read only when tests run, never while parsing, so a new value
  makes dbt re-parse nothing. None (an empty string counts as none) when neither is set.
#}
{% macro engram_changed_since() -%}
    {%- set since = var('engram_changed_since', none) or env_var('ENGRAM_CHANGED_SINCE', '') -%}
    {{ return(since if since else none) }}
{%- endmacro %}


{#
  The rows the running build wrote in a model that stamps its writes (`written_at`, unique
  to each write and growing: engram.numeric.incremental.write_stamp; int_pattern_texts__neighbors,
  pattern_predictions), as a condition on `relation`: on an incremental build with a
  watermark, the rows of the newest stamp (those of this build's write; when it wrote none,
  those of the previous one, checked again); otherwise `true`, every row. Rows a refresh
  left alone were checked by the build that wrote them. A test's `where:
  "__engram_refreshed_rows__"` is filled in with it (get_where_subquery above); a singular
  test calls it with the model's ref.
#}
{% macro refreshed_rows(relation, column='written_at') -%}
    {%- set since = engram_changed_since() -%}
    {%- if since and not flags.FULL_REFRESH -%}
        {{ return(column ~ " = (select max(" ~ column ~ ") from " ~ relation ~ ")") }}
    {%- endif -%}
    {{ return('true') }}
{%- endmacro %}
