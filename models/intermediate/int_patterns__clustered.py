"""Every pattern in exactly one paraphrase group and one theme (engram/numeric/clustering.py).

Two cuts of the same average-linkage clustering of the description embeddings:
paraphrase groups at var('cluster_merge_threshold') (0.5: one approach in other words, the
older "clusters") and themes at var('theme_threshold') (one kind of problem). Both cuts
were chosen by measurement (python -m bench.themes; README "Themes and paraphrase
groups"). Identical descriptions are clustered once (by description_hash).

Incremental (README "Incremental builds"; engram/numeric/incremental.py): a build places
only new or changed patterns, which join the existing group / theme they are most similar
to on average when that mean is within the cut, or found new ones; groups and themes keep
the id they were founded with. A full clustering runs on the first build, on
`--full-refresh`, and when more than var('recluster_drift_share') of the patterns were
placed incrementally since the last full clustering (ids then carried over by overlap).
Only rows whose values changed are returned; delete+insert on pattern_id writes them.
"""

import pyarrow as pa

from engram.numeric.clustering import keyed_rows, two_level_table
from engram.numeric.incremental import PLACED_BY_CLUSTERING, changed_rows, two_level_refresh


def refreshed(dbt, session, patterns, x, theme_threshold, paraphrase_threshold):
    """The rows an incremental build writes: only those whose values changed."""
    previous = session.sql(
        "select pattern_id, description_hash, cluster_id, theme_id, paraphrase_group_id, "
        f"placed_by from {dbt.this}"
    ).to_arrow_table()
    table, _mode = two_level_refresh(
        patterns,
        previous,
        theme_threshold=theme_threshold,
        paraphrase_threshold=paraphrase_threshold,
        drift_share=float(dbt.config.get("recluster_drift_share")),
        x=x,
    )
    if table is None:  # nothing new: an empty delete+insert
        return session.sql(f"select * from {dbt.this} limit 0").to_arrow_table()
    # a joined group's size, label, ... change; every other row stays as it is
    return changed_rows(session, table, dbt.this, "engram_clustered_refresh")


def anything_changed(dbt, session):
    """Any pattern new, changed or gone since the last build? Asked on ids and hashes
    alone, so a build with nothing new never loads the embeddings."""
    keys = dbt.ref("stg_patterns").project("pattern_id, description_hash").to_arrow_table()
    session.register("engram_clustered_keys", keys)
    try:
        (differ,) = session.sql(
            "select count(*) from ((select pattern_id, description_hash from engram_clustered_keys "
            f"except select pattern_id, description_hash from {dbt.this}) union all "
            f"(select pattern_id, description_hash from {dbt.this} "
            "except select pattern_id, description_hash from engram_clustered_keys))"
        ).fetchall()[0]
    finally:
        session.unregister("engram_clustered_keys")
    return differ > 0


def model(dbt, session):
    dbt.config(
        materialized="incremental",
        incremental_strategy="delete+insert",
        unique_key="pattern_id",
        on_schema_change="append_new_columns",
    )
    columns = session.sql(f"select * from {dbt.this} limit 0").columns if dbt.is_incremental else []
    incremental = "placed_by" in columns
    if incremental and not anything_changed(dbt, session):
        result = session.sql(f"select * from {dbt.this} limit 0").to_arrow_table()
    else:
        staged = dbt.ref("stg_patterns")
        patterns = (
            staged.project("pattern_id, description, description_hash")
            .order("pattern_id")
            .to_arrow_table()
        )
        # one vector per distinct description, streamed into one matrix: every pattern's
        # copy (1M x 384 floats, 1.5 GB as Arrow and again as NumPy) overran 6 GiB
        x = keyed_rows(
            patterns.column("description_hash"),
            staged.aggregate(
                "description_hash, any_value(embedding) as embedding", "description_hash"
            )
            .order("description_hash")
            .to_arrow_reader(50_000),
            "description_hash",
        )
        theme_threshold = float(dbt.config.get("theme_threshold"))
        paraphrase_threshold = float(dbt.config.get("cluster_merge_threshold"))
        if incremental:
            result = refreshed(dbt, session, patterns, x, theme_threshold, paraphrase_threshold)
        else:
            result = two_level_table(
                patterns,
                theme_threshold=theme_threshold,
                paraphrase_threshold=paraphrase_threshold,
                x=x,
            )
            placed = pa.array([PLACED_BY_CLUSTERING] * result.num_rows, type=pa.string())
            result = result.append_column("placed_by", placed)
    return result
