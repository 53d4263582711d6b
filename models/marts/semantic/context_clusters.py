"""One row per context cluster (kind of task), with the centroid a query is matched to.

A new task text is mapped to a cluster by embedding it and taking the centroid with the
highest dot product (centroids are unit length). Cluster -1 collects the events that
carried no task text; it has no centroid, so no query maps to it.
"""

import numpy as np
import pyarrow as pa

from engram.numeric.clustering import embedding_array, embedding_matrix, summarize

NO_CONTEXT_ID = -1
NO_CONTEXT_LABEL = "(no task text)"


def model(dbt, session):
    dbt.config(materialized="table")
    contexts = dbt.ref("stg_contexts").project("context_hash, embedding, n_events")
    clustered = dbt.ref("int_contexts__clustered").project(
        "context_hash, context_cluster_id, context_cluster_label"
    )
    rows = contexts.join(clustered, "context_hash").order("context_hash").to_arrow_table()
    events = dbt.ref("stg_usage_events").filter("context_hash is null").aggregate("count(*)")
    no_context = int(events.fetchall()[0][0])

    # cluster numbers are kept across incremental builds, so they may have gaps
    numbers, labels = np.unique(rows.column("context_cluster_id").to_numpy(), return_inverse=True)
    labels = labels.reshape(-1)
    summary = summarize(embedding_matrix(rows.column("embedding")), labels)
    k = len(summary.sizes)
    n_events = np.bincount(labels, weights=rows.column("n_events").to_numpy(), minlength=k)
    label_text = np.empty(k, dtype=object)
    label_text[labels] = np.asarray(rows.column("context_cluster_label").to_pylist(), dtype=object)

    ids = numbers.astype(np.int64)
    n_contexts = summary.sizes.astype(np.int64)
    centroids = summary.centroids
    missing = np.zeros(k, dtype=bool)
    if no_context:
        ids = np.append(ids, NO_CONTEXT_ID)
        label_text = np.append(label_text, NO_CONTEXT_LABEL)
        n_contexts = np.append(n_contexts, 0)
        n_events = np.append(n_events, no_context)
        centroids = np.vstack([centroids, np.zeros((1, centroids.shape[1]), np.float32)])
        missing = np.append(missing, True)
    return pa.table(
        {
            "context_cluster_id": pa.array(ids, type=pa.int64()),
            "label": pa.array(label_text, type=pa.string()),
            "n_contexts": pa.array(n_contexts, type=pa.int64()),
            "n_events": pa.array(n_events.astype(np.int64), type=pa.int64()),
            "centroid": embedding_array(centroids, missing),
        }
    )
