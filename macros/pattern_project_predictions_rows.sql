{#
  pattern_project_predictions' query (the model is pattern_project_predictions_rows() and
  nothing else), in three parts so that the serving copy can keep the part that only
  depends on a pattern's own sums apart from the part that every event moves:

  - pattern_project_cells_rows(weekly, patterns): per (project, context cluster, pattern),
    the project's own sums, the cell's and the pattern's sums over every project. A
    pattern's rows come from its own weekly sums alone (int_pattern_project_cells).
  - project_priors_rows(weekly): per project, its global mean and baseline shift, which
    every event of every pattern moves, plus the settings (int_project_priors: a few rows).
  - pattern_project_predictions_from(cells, priors, labels): the four levels of shrinkage,
    row by row, from the two above.

  The serving copy stores the first two as tables and the mart as a view of the third
  over them (engram.query.serving.SERVED_VIEWS): a refresh rewrites the cells of the
  patterns whose sums changed and the priors' few rows, where it rewrote all 4M rows of
  the mart (23.6 s of a 10M-event refresh's publish, 2026-12-03), because the priors
  change every row.

  `patterns` (a subquery of pattern_ids) scopes the rows to some patterns. A pattern's
  rows come from its own cells plus each project's totals, which are always taken over
  every pattern, so the rows of a scoped call are exactly the view's rows for those
  patterns. pattern_project_predictions_is_well_formed checks, on an incremental build,
  only the patterns that build recomputed (the whole view took ~19 s of a refresh at 10M
  events).
#}
{% macro pattern_project_predictions_rows(patterns=none) %}
{%- set weekly = ref('int_pattern_context_weeks__aggregated') -%}
{{ pattern_project_predictions_from(
    '(' ~ pattern_project_cells_rows(weekly, patterns) ~ ')',
    '(' ~ project_priors_rows(weekly) ~ ')',
    ref('int_contexts__clustered'),
) }}
{% endmacro %}


{% macro pattern_project_cells_rows(weekly, patterns=none) %}
with

-- sum_quality as an exact decimal: this is a view, and sums of doubles could differ in
-- the last bits between reads (macros/exact_decimal.sql)
cells as (
    select
        project_id,
        context_cluster_id,
        pattern_id,
        n_events,
        {{ exact_decimal('sum_quality') }} as sum_quality
    from {{ weekly }}
    {%- if patterns %}
    where pattern_id in {{ patterns }}
    {%- endif %}
),

own_cells as (
    select
        project_id,
        context_cluster_id,
        pattern_id,
        sum(n_events)::bigint as n_events,
        sum(sum_quality) as sum_quality
    from cells
    group by project_id, context_cluster_id, pattern_id
),

all_cells as (
    select
        context_cluster_id,
        pattern_id,
        sum(n_events) as n_events,
        sum(sum_quality) as sum_quality,
        count(*) as n_projects
    from own_cells
    group by context_cluster_id, pattern_id
),

own_patterns as (
    select project_id, pattern_id, sum(n_events) as n_events, sum(sum_quality) as sum_quality
    from own_cells
    group by project_id, pattern_id
),

all_patterns as (
    select pattern_id, sum(n_events) as n_events, sum(sum_quality) as sum_quality
    from own_cells
    group by pattern_id
),

final as (
    select
        own_cells.project_id,
        own_cells.context_cluster_id,
        own_cells.pattern_id,
        own_cells.n_events,
        own_cells.sum_quality,
        all_cells.n_events as cell_n_events_all,
        all_cells.sum_quality as cell_sum_quality_all,
        all_cells.n_projects as cell_n_projects,
        own_patterns.n_events as pattern_n_events,
        own_patterns.sum_quality as pattern_sum_quality,
        all_patterns.n_events as pattern_n_events_all,
        all_patterns.sum_quality as pattern_sum_quality_all
    from own_cells
    inner join all_cells
        on all_cells.context_cluster_id = own_cells.context_cluster_id
        and all_cells.pattern_id = own_cells.pattern_id
    inner join own_patterns
        on own_patterns.project_id = own_cells.project_id
        and own_patterns.pattern_id = own_cells.pattern_id
    inner join all_patterns on all_patterns.pattern_id = own_cells.pattern_id
)

select * from final
{% endmacro %}


{% macro project_priors_rows(weekly) %}
with

settings as (
    select
        {{ var('prediction_prior_strength') }}::double as prior_strength,
        {{ var('project_share_weight') }}::double as share_weight,
        {{ var('project_share_fade') }}::double as share_fade
),

-- every pattern's events: the project's and the global means are priors of every cell
-- (exact sums, so the same values whatever the order of the rows)
own_totals as (
    select
        project_id,
        sum(n_events) as n_events,
        sum({{ exact_decimal('sum_quality') }}) as sum_quality
    from {{ weekly }}
    group by project_id
),

all_totals as (
    select sum(n_events) as n_events, sum(sum_quality) as sum_quality from own_totals
),

-- The other projects' outcomes are moved by shift = (the project's mean quality - theirs)
-- x n_own / (n_own + prior_strength) before they are borrowed: what carries over is how a
-- pattern did there relative to their usual, not their baseline
-- (engram/numeric/ranking.py, bench/project_sharing.py).
shifts as (
    select
        own_totals.project_id,
        own_totals.n_events as own_n,
        own_totals.sum_quality as own_sum,
        all_totals.n_events - own_totals.n_events as other_n,
        all_totals.sum_quality - own_totals.sum_quality as other_sum,
        -- the project's mean shrunk toward theirs with prior_strength pseudo-events, so a
        -- project with a handful of events does not shift everything by their noise
        case
            when own_totals.n_events > 0 and all_totals.n_events > own_totals.n_events
                then (own_totals.sum_quality / own_totals.n_events
                    - (all_totals.sum_quality - own_totals.sum_quality)
                    / (all_totals.n_events - own_totals.n_events))
                * own_totals.n_events / (own_totals.n_events + settings.prior_strength)
            else 0
        end as baseline_shift
    from own_totals
    cross join all_totals
    cross join settings
),

-- w(n) at the global level
global_weights as (
    select
        shifts.*,
        {{ faded_share_weight('settings.share_weight', 'settings.share_fade', 'shifts.own_n') }}
            as lam
    from shifts
    cross join settings
),

-- the project's global mean: its own events plus w(N own) x the others' (shifted),
-- rounded to the prior's grid
final as (
    select
        global_weights.project_id,
        global_weights.baseline_shift,
        -- on the prior's grid (macros/shrinkage.sql), as the pooled prior is
        {{ prior_mean(
            '(global_weights.own_sum + global_weights.lam * least(greatest('
            ~ 'global_weights.other_sum + global_weights.baseline_shift * global_weights.other_n,'
            ~ ' 0), global_weights.other_n))'
            ~ ' / (global_weights.own_n + global_weights.lam * global_weights.other_n)') }}
            as global_mean,
        settings.prior_strength,
        settings.share_weight,
        settings.share_fade
    from global_weights
    cross join settings
)

select * from final
{% endmacro %}


{% macro pattern_project_predictions_from(cells, priors, labels) %}
with

labels as (
    select distinct context_cluster_id, context_cluster_label
    from {{ labels }}
),

-- the pattern across projects, on each of its cells' rows: the project's own events of it
-- plus w(n own) x the other projects' (shifted)
pattern_others as (
    select
        cells.*,
        priors.baseline_shift,
        priors.global_mean,
        priors.prior_strength,
        priors.share_weight,
        cells.pattern_n_events as pattern_own_n,
        cells.pattern_sum_quality as pattern_own_sum,
        cells.pattern_n_events_all - cells.pattern_n_events as pattern_other_n,
        least(greatest(
            cells.pattern_sum_quality_all - cells.pattern_sum_quality
            + priors.baseline_shift * (cells.pattern_n_events_all - cells.pattern_n_events),
            0), cells.pattern_n_events_all - cells.pattern_n_events) as pattern_other_sum,
        {{ faded_share_weight('priors.share_weight', 'priors.share_fade',
                              'cells.pattern_n_events') }} as pattern_lam,
        {{ faded_share_weight('priors.share_weight', 'priors.share_fade',
                              'cells.n_events') }} as cell_share_weight
    from {{ cells }} as cells
    inner join {{ priors }} as priors on priors.project_id = cells.project_id
),

levels as (
    select
        project_id,
        context_cluster_id,
        pattern_id,
        n_events,
        sum_quality,
        cell_n_events_all - n_events as other_n_events,
        least(greatest(
            cell_sum_quality_all - sum_quality
            + baseline_shift * (cell_n_events_all - n_events),
            0), cell_n_events_all - n_events) as other_sum_quality,
        baseline_shift,
        cell_n_projects - 1 as other_projects,
        {{ shrunk_mean(
            'pattern_own_sum + pattern_lam * pattern_other_sum',
            'pattern_own_n + pattern_lam * pattern_other_n',
            'global_mean', 'prior_strength') }} as pattern_mean_shrunk,
        prior_strength,
        share_weight,
        cell_share_weight
    from pattern_others
),

shrunk as (
    select
        *,
        {{ shrunk_mean('cell_share_weight * other_sum_quality',
                       'cell_share_weight * other_n_events',
                       'pattern_mean_shrunk', 'prior_strength') }} as others_mean_shrunk
    from levels
),

final as (
    select
        shrunk.project_id,
        shrunk.context_cluster_id,
        coalesce(labels.context_cluster_label, '(no task text)') as context_cluster_label,
        shrunk.pattern_id,
        shrunk.n_events,
        shrunk.sum_quality / shrunk.n_events as mean_quality,
        {{ shrunk_mean('shrunk.sum_quality', 'shrunk.n_events',
                       'shrunk.others_mean_shrunk', 'shrunk.prior_strength') }}
            as predicted_success,
        shrunk.other_n_events,
        shrunk.other_projects,
        shrunk.baseline_shift,
        shrunk.others_mean_shrunk,
        shrunk.pattern_mean_shrunk,
        shrunk.prior_strength,
        shrunk.share_weight,
        shrunk.cell_share_weight,
        {{ posterior_shapes('shrunk.sum_quality', 'shrunk.n_events',
                            'shrunk.others_mean_shrunk', 'shrunk.prior_strength') }}
    from shrunk
    left join labels on labels.context_cluster_id = shrunk.context_cluster_id
)

select * from final
{% endmacro %}


{#
  int_pattern_project_cells' post-hook (DuckDB only): the table macro
  <schema>.int_pattern_project_cells_for(keys), the view's rows for a list of pattern_ids,
  from those patterns' weekly sums alone: the serving copy's scoped sync
  (engram.query.serving.SCOPED). Named without the database, as create_pattern_trends_served.
#}
{% macro create_pattern_project_cells_for() %}
    {%- if target.type == 'duckdb' -%}
        create or replace macro {{ this.schema }}.int_pattern_project_cells_for(keys) as table
        {{ pattern_project_cells_rows(
            ref('int_pattern_context_weeks__aggregated').include(database=False),
            patterns='(select unnest(keys))',
        ) }}
    {%- endif -%}
{% endmacro %}

{#
  pattern_project_predictions' post-hook (DuckDB only): the table macro
  <schema>.pattern_project_predictions_served(), the mart's query over
  int_pattern_project_cells and int_project_priors, named without the database. The
  serving copy holds those two as tables and makes its pattern_project_predictions a view
  of this macro's text (engram.query.serving.SERVED_VIEWS), so a publish writes the
  changed patterns' cells and a few prior rows instead of every row of the mart.
#}
{% macro create_pattern_project_predictions_served() %}
    {%- if target.type == 'duckdb' -%}
        create or replace macro {{ this.schema }}.pattern_project_predictions_served() as table
        {{ pattern_project_predictions_from(
            ref('int_pattern_project_cells').include(database=False),
            ref('int_project_priors').include(database=False),
            ref('int_contexts__clustered').include(database=False),
        ) }}
    {%- endif -%}
{% endmacro %}
