"""Every distinct task text (event context) in exactly one context cluster.

Same algorithm as the pattern clusters (engram/clustering.py) with its own threshold
(var context_cluster_threshold). Events without a context have no row here; the
prediction models put them in context cluster -1, '(no task text)'. The clustering sees
texts only, never outcomes, so the backtest's use of these clusters peeks at no answer,
though it does see task texts from later weeks (stated in prediction_backtest.yml).
"""

import numpy as np
import pyarrow as pa

from engram.clustering import cluster_texts, embedding_matrix


def model(dbt, session):
    dbt.config(materialized="table")
    threshold = float(dbt.config.get("context_cluster_threshold"))
    contexts = (
        dbt.ref("stg_contexts")
        .project("context_hash, context, embedding")
        .order("context_hash")
        .to_arrow_table()
    )
    clusters = cluster_texts(
        np.asarray(contexts.column("context_hash").to_pylist(), dtype=object),
        np.asarray(contexts.column("context").to_pylist(), dtype=object),
        embedding_matrix(contexts.column("embedding")),
        threshold,
    )
    return pa.table(
        {
            "context_hash": contexts.column("context_hash"),
            "context_cluster_id": pa.array(clusters.labels, type=pa.int64()),
            "context_cluster_label": pa.array(clusters.label_text, type=pa.string()),
            "context_cluster_size": pa.array(clusters.sizes, type=pa.int64()),
            "similarity_to_centroid": pa.array(clusters.similarity, type=pa.float64()),
        }
    )
