"""Every pattern in exactly one cluster of paraphrases (algorithm: engram/numeric/clustering.py).

Identical descriptions are clustered once (by description_hash). Cluster ids are numbered
by the smallest pattern_id in the cluster: deterministic for a given input, though they
may shift when patterns are added.
"""

from engram.numeric.clustering import clustered_table


def model(dbt, session):
    dbt.config(materialized="table")
    patterns = (
        dbt.ref("stg_patterns")
        .project("pattern_id, description, description_hash, embedding")
        .order("pattern_id")
        .to_arrow_table()
    )
    return clustered_table(
        patterns,
        group_key="description_hash",
        text="description",
        keep=("pattern_id", "description_hash"),
        threshold=float(dbt.config.get("cluster_merge_threshold")),
        names={
            "cluster_id": "cluster_id",
            "cluster_size": "cluster_size",
            "cluster_label": "cluster_label",
            "similarity_to_centroid": "similarity_to_centroid",
        },
    )
