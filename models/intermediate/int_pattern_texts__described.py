"""What each paraphrase group and theme looks like, once per distinct description.

int_patterns__clustered stores which group and theme each pattern is in; this model
describes them (engram.numeric.incremental.describe_texts_two_levels, the facts a full
clustering reports): per distinct description its similarity to its group's and its
theme's centroid, and its group's and theme's size (patterns), label (the most central
description, then c-TF-IDF terms), terms and medoid (the first pattern with the central
description). pattern_clusters joins the two by description_hash.

Why a table of its own, rebuilt whole: every member's size, and most members' similarity
to the moved centroid, change when one pattern joins a group; stored per pattern (1M
rows at 10M events) that rewrote nearly every row at each refresh, where there are
~24k distinct descriptions (issue 18). Centroids and medoids are always exact (no frozen
state): the same assignment gives the same description, however it was made.
"""

import numpy as np

from engram.numeric.clustering import vectors_in_order
from engram.numeric.incremental import (
    DistinctTexts,
    TextPlacement,
    describe_texts_two_levels,
    labels_of_ids,
)

BATCH = 50_000  # descriptions' vectors per Arrow batch
COLUMNS = (
    "description_hash",
    "cluster_size",
    "cluster_label",
    "similarity_to_centroid",
    "theme_size",
    "theme_label",
    "theme_terms",
    "theme_medoid_pattern_id",
    "paraphrase_group_size",
    "paraphrase_group_label",
    "paraphrase_group_medoid_pattern_id",
    "similarity_to_theme_centroid",
)


def model(dbt, session):
    dbt.config(materialized="table")
    staged = dbt.ref("stg_patterns")
    assigned = dbt.ref("int_patterns__clustered")
    # one row per distinct description, in order of its first pattern: the order the
    # full clustering numbers and breaks ties in (rows in pattern_id order)
    texts = (
        assigned.join(
            staged.project("pattern_id as s_pattern_id, description_hash as s_hash, description"),
            "pattern_id = s_pattern_id and description_hash = s_hash",
        )
        .aggregate(
            "description_hash, min(pattern_id) as first_key, count(*) as n_rows, "
            "any_value(description) as description, any_value(theme_id) as theme_id, "
            "any_value(paraphrase_group_id) as paraphrase_group_id, "
            "any_value(cluster_id) as cluster_id",
            "description_hash",
        )
        .order("first_key")
        .to_arrow_table()
    )
    keys = np.asarray(texts.column("description_hash").to_pylist(), dtype=object)
    empty = np.asarray([""] * len(keys), dtype=object)
    distinct = DistinctTexts(
        keys=keys,
        texts=np.asarray(texts.column("description").to_pylist(), dtype=object),
        first_key=np.asarray(texts.column("first_key").to_pylist(), dtype=object),
        n_rows=texts.column("n_rows").to_numpy(),
        old_theme=empty,
        old_group=empty,
        old_number=np.full(len(keys), -1, dtype=np.int64),
    )
    theme_labels, theme_ids = labels_of_ids(np.asarray(texts.column("theme_id").to_pylist()))
    group_labels, group_ids = labels_of_ids(
        np.asarray(texts.column("paraphrase_group_id").to_pylist())
    )
    placement = TextPlacement(
        theme_labels=theme_labels,
        theme_ids=theme_ids,
        group_labels=group_labels,
        group_ids=group_ids,
        numbers=texts.column("cluster_id").to_numpy(),
    )
    x = vectors_in_order(staged, keys, BATCH)
    return describe_texts_two_levels(distinct, x, placement).select(list(COLUMNS))
