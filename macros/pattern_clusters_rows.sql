{#
  pattern_clusters' query: each pattern's assignment (int_patterns__clustered: its
  paraphrase group and theme) joined with what its description's group and theme look
  like (int_pattern_texts__described: sizes, labels, terms, medoids, similarities).
  The warehouse's pattern_clusters is a view of it; the post-hook makes the table macro
  pattern_clusters_served(), the same query over the two tables named without the
  database, which the serving copy's view is (engram.query.serving.SERVED_VIEWS). Stored
  per pattern, the group columns made every refresh rewrite all 1M rows of the mart and
  of its copy (a joining pattern moves its group's size and centroid for every member).
#}
{% macro pattern_clusters_rows(clustered, described) %}
select
    clustered.pattern_id,
    clustered.cluster_id,
    described.cluster_size,
    described.cluster_label,
    described.similarity_to_centroid,
    clustered.theme_id,
    described.theme_size,
    described.theme_label,
    described.theme_terms,
    described.theme_medoid_pattern_id,
    clustered.paraphrase_group_id,
    described.paraphrase_group_size,
    described.paraphrase_group_label,
    described.paraphrase_group_medoid_pattern_id,
    described.similarity_to_theme_centroid
from {{ clustered }} as clustered
inner join {{ described }} as described
    on described.description_hash = clustered.description_hash
{% endmacro %}

{% macro create_pattern_clusters_served() %}
    {%- if target.type == 'duckdb' -%}
        create or replace macro {{ this.schema }}.pattern_clusters_served() as table
        {{ pattern_clusters_rows(
            ref('int_patterns__clustered').include(database=False),
            ref('int_pattern_texts__described').include(database=False),
        ) }}
    {%- endif -%}
{% endmacro %}
