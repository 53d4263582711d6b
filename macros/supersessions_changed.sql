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
        where greatest(recorded_at, coalesce(revoked_at, recorded_at)) > (
            select coalesce(max(max_loaded_at), {{ earliest_timestamp() }}) from {{ this }}
        )
    {%- endset -%}
    {{ return(run_query(sql).columns[0].values()[0] > 0) }}
{%- endmacro %}
