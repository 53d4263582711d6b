"""Every pattern in exactly one cluster of paraphrases (algorithm: engram/clustering.py).

Identical descriptions are clustered once (by description_hash). Cluster ids are numbered
by the smallest pattern_id in the cluster: deterministic for a given input, though they
may shift when patterns are added.
"""

import numpy as np
import pyarrow as pa

from engram.clustering import cluster_texts, embedding_matrix


def model(dbt, session):
    dbt.config(materialized="table")
    threshold = float(dbt.config.get("cluster_merge_threshold"))
    patterns = (
        dbt.ref("stg_patterns")
        .project("pattern_id, description, description_hash, embedding")
        .order("pattern_id")
        .to_arrow_table()
    )
    clusters = cluster_texts(
        np.asarray(patterns.column("description_hash").to_pylist(), dtype=object),
        np.asarray(patterns.column("description").to_pylist(), dtype=object),
        embedding_matrix(patterns.column("embedding")),
        threshold,
    )
    return pa.table(
        {
            "pattern_id": patterns.column("pattern_id"),
            "description_hash": patterns.column("description_hash"),
            "cluster_id": pa.array(clusters.labels, type=pa.int64()),
            "cluster_size": pa.array(clusters.sizes, type=pa.int64()),
            "cluster_label": pa.array(clusters.label_text, type=pa.string()),
            "similarity_to_centroid": pa.array(clusters.similarity, type=pa.float64()),
        }
    )
