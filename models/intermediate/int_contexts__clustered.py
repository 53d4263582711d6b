"""Every distinct task text (event context) in exactly one context cluster.

Same algorithm as the pattern clusters (engram/numeric/clustering.py) with its own
threshold (var context_cluster_threshold). Events without a context have no row here; the
prediction models put them in context cluster -1, '(no task text)'. The clustering sees
texts only, never outcomes, so the backtest's use of these clusters peeks at no answer,
though it does see task texts from later weeks (stated in prediction_backtest.yml).
"""

from engram.numeric.clustering import clustered_table


def model(dbt, session):
    dbt.config(materialized="table")
    contexts = (
        dbt.ref("stg_contexts")
        .project("context_hash, context, embedding")
        .order("context_hash")
        .to_arrow_table()
    )
    return clustered_table(
        contexts,
        group_key="context_hash",
        text="context",
        keep=("context_hash",),
        threshold=float(dbt.config.get("context_cluster_threshold")),
        names={
            "cluster_id": "context_cluster_id",
            "cluster_label": "context_cluster_label",
            "cluster_size": "context_cluster_size",
            "similarity_to_centroid": "similarity_to_centroid",
        },
    )
