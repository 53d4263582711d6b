"""Every distinct task text (event context) in exactly one context cluster.

Same algorithm as the pattern clusters (engram/numeric/clustering.py) with its own
threshold (var context_cluster_threshold). Events without a context have no row here; the
prediction models put them in context cluster -1, '(no task text)'. The clustering sees
texts only, never outcomes, so the backtest's use of these clusters peeks at no answer,
though it does see task texts from later weeks (stated in prediction_backtest.yml).

Incremental like int_patterns__clustered (engram/numeric/incremental.py): new task texts
join the cluster they are most similar to on average within the cut or found new ones;
a cluster keeps its number; a full clustering on the first build, on `--full-refresh`
and past var('recluster_drift_share'). Only changed rows are written (delete+insert).
"""

import pyarrow as pa

from engram.numeric.clustering import clustered_table
from engram.numeric.incremental import PLACED_BY_CLUSTERING, changed_rows, one_level_refresh

NAMES = {
    "cluster_id": "context_cluster_id",
    "cluster_label": "context_cluster_label",
    "cluster_size": "context_cluster_size",
    "similarity_to_centroid": "similarity_to_centroid",
}


def anything_new(dbt, session, source):
    """Any task text new or gone since the last build? Asked on the hashes alone, so a
    build with nothing new never loads the embeddings."""
    session.register("engram_context_keys", source.project("context_hash").to_arrow_table())
    try:
        (differ,) = session.sql(
            "select count(*) from ((select context_hash from engram_context_keys "
            f"except select context_hash from {dbt.this}) union all "
            f"(select context_hash from {dbt.this} except select context_hash "
            "from engram_context_keys))"
        ).fetchall()[0]
    finally:
        session.unregister("engram_context_keys")
    return differ > 0


def clustered(dbt, session, source, threshold):
    """All rows after a full clustering; after an incremental placement, only the rows
    whose values changed."""
    columns = session.sql(f"select * from {dbt.this} limit 0").columns if dbt.is_incremental else []
    if "placed_by" in columns and not anything_new(dbt, session, source):
        return session.sql(f"select * from {dbt.this} limit 0").to_arrow_table()
    contexts = (
        source.project("context_hash, context, embedding").order("context_hash").to_arrow_table()
    )
    labels, placed, mode = None, None, "full"
    if "placed_by" in columns:
        previous = session.sql(
            f"select context_hash, context_cluster_id, placed_by from {dbt.this}"
        ).to_arrow_table()
        labels, placed, mode = one_level_refresh(
            contexts,
            previous,
            key="context_hash",
            id_column="context_cluster_id",
            threshold=threshold,
            drift_share=float(dbt.config.get("recluster_drift_share")),
        )
        if mode == "unchanged":
            return session.sql(f"select * from {dbt.this} limit 0").to_arrow_table()
    table = clustered_table(
        contexts,
        group_key="context_hash",
        text="context",
        keep=("context_hash",),
        threshold=threshold,
        names=NAMES,
        labels=labels,
    )
    if placed is None:
        placed = [PLACED_BY_CLUSTERING] * table.num_rows
    table = table.append_column("placed_by", pa.array(list(placed), type=pa.string()))
    if mode == "full":
        return table
    return changed_rows(session, table, dbt.this, "engram_contexts_refresh")


def model(dbt, session):
    dbt.config(
        materialized="incremental",
        incremental_strategy="delete+insert",
        unique_key="context_hash",
        on_schema_change="append_new_columns",
    )
    source = dbt.ref("stg_contexts")
    return clustered(dbt, session, source, float(dbt.config.get("context_cluster_threshold")))
