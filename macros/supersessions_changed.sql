{#
  True on an incremental run of a pattern-keyed aggregate when a merge was recorded or
  undone (raw.pattern_supersessions) after the newest event the model has processed: the
  events of a merged pattern then count toward another id, in weeks the incremental scope
  would not touch, so the model recomputes every row (a pre_hook empties it first, since
  delete+insert would leave the dropped pattern's old rows behind). Until the next ingest
  advances the watermark, later builds recompute again: correct, only slower.
#}
{% macro supersessions_changed() -%}
    {%- if not execute or not is_incremental() -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set sql -%}
        select count(*)
        from {{ source('raw', 'pattern_supersessions') }}
        where {{ merge_changed_after(
            '(select coalesce(max(max_loaded_at), ' ~ earliest_timestamp() ~ ') from ' ~ this ~ ')'
        ) }}
    {%- endset -%}
    {{ return(run_query(sql).columns[0].values()[0] > 0) }}
{%- endmacro %}

{#
  The rule "a merge was recorded or undone after `since`" (an SQL timestamp expression),
  as a predicate on raw.pattern_supersessions' rows: a revocation counts at its own time,
  so undoing an old merge is news too. Every scope that must recompute all rows after a
  merge (supersessions_changed, changed_patterns, context_weeks_recompute_all) asks it
  here, each against its own watermark.
#}
{% macro merge_changed_after(since) -%}
    greatest(recorded_at, coalesce(revoked_at, recorded_at)) > {{ since }}
{%- endmacro %}
