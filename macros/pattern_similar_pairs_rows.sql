{#
  pattern_similar_pairs' query: each pattern's list is its description's
  (int_pattern_texts__neighbors: the k + 1 nearest patterns of each distinct description,
  own patterns first in id order) minus the pattern itself, first k. A pattern is in its
  description's list iff its id is <= the list's last_same_description_id, and then it
  stands before every later entry of another description and before the entries of its
  own description with higher ids: those entries move up one rank. Joins and arithmetic
  only, no window: the whole view (10M rows at 1M patterns) reads in ~0.35 s, one
  pattern's list in a few ms (the filter on pattern_id reaches the patterns' scan).
  `carry`: more columns to pass through, of `lists` or, named `clustered.<column>`, of
  `clustered` (int_pattern_alerts__found joins both patterns' evidence to the 1M patterns
  and the lists' 267k entries instead of to the 10M pairs, and filters in this join).
  The warehouse's pattern_similar_pairs is a view of it; the post-hook makes the table
  macro pattern_similar_pairs_served(), the same query over the two tables named without
  the database, which the serving copy's view is (engram.query.serving.SERVED_VIEWS).
#}
{% macro pattern_similar_pairs_rows(clustered, lists, carry=[]) %}
select pattern_id, similar_pattern_id, similarity, rank
    {%- for column in carry %}, {{ column.split('.')[-1] }}{% endfor %}
from (
    select
        clustered.pattern_id,
        lists.similar_pattern_id,
        lists.similarity,
        {%- for column in carry %}
        {{ column if '.' in column else 'lists.' ~ column }},
        {%- endfor %}
        lists.list_rank - case
            when lists.same_description and clustered.pattern_id < lists.similar_pattern_id
                then 1
            when not lists.same_description
                and clustered.pattern_id <= lists.last_same_description_id
                then 1
            else 0
        end as rank
    from {{ clustered }} as clustered
    inner join {{ lists }} as lists on lists.description_hash = clustered.description_hash
    where lists.similar_pattern_id <> clustered.pattern_id
) as listed
where rank <= {{ var('similar_pairs_k') }}
{% endmacro %}

{% macro create_pattern_similar_pairs_served() %}
    {%- if target.type == 'duckdb' -%}
        create or replace macro {{ this.schema }}.pattern_similar_pairs_served() as table
        {{ pattern_similar_pairs_rows(
            ref('int_patterns__clustered').include(database=False),
            ref('int_pattern_texts__neighbors').include(database=False),
        ) }}
    {%- endif -%}
{% endmacro %}
