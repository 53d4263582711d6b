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
The placement runs once per distinct description (placed_by_text), not once per
pattern; a re-cluster still loads every row (two_level_refresh).

Only the assignment is stored here (which group and theme, and how it was placed): a
refresh writes the new or re-texted patterns' rows alone (delete+insert on pattern_id).
What a group or theme looks like (size, label, terms, medoid, each text's similarity to
the centroid) moves whenever a member joins, for every member; it is computed per
distinct description in int_pattern_texts__described and joined in the view
pattern_clusters. Stored per pattern, as before issue 18's split, those columns made
each refresh rewrite all 1M rows (8.5 + 2.0 s of a 10M-event refresh's 16.8 s node).
"""

import numpy as np
import pyarrow as pa

from engram.numeric.clustering import (
    keyed_rows,
    two_level_assignment,
    vectors_by_description,
    vectors_in_order,
)
from engram.numeric.incremental import (
    PLACED_BY_CLUSTERING,
    PLACED_BY_JOIN,
    DistinctTexts,
    changed_rows,
    drift_exceeded,
    place_texts_two_levels,
    two_level_refresh,
)

BATCH = 50_000  # descriptions' vectors per Arrow batch: 1M FLOAT[384] are 1.5 GB whole
# the stored columns, in this order (pattern_clusters adds what the groups look like)
COLUMNS = (
    "pattern_id",
    "description_hash",
    "cluster_id",
    "theme_id",
    "paraphrase_group_id",
    "placed_by",
)
LISTED = ", ".join(COLUMNS)


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
        return session.sql(f"select {LISTED} from {dbt.this} limit 0").to_arrow_table()
    return changed_rows(session, table.select(list(COLUMNS)), dbt.this, "engram_clustered_scratch")


def _scratch(dbt, session):
    """The rows (pattern_id, description_hash, description) and each row's previous state
    (its theme, group, number and placed_by when the same pattern had the same text) as
    temp tables: every step of the per-text refresh reads them."""
    # dbt.ref gives a relation, not a name: a temporary view names it for the SQL below
    dbt.ref("stg_patterns").project("pattern_id, description_hash, description").create_view(
        "engram_clustered_staged", replace=True
    )
    session.execute(
        "create or replace temp table engram_clustered_rows as "
        "select * from engram_clustered_staged"
    )
    session.execute(
        "create or replace temp table engram_clustered_old as "
        "select r.pattern_id, r.description_hash, p.theme_id, p.paraphrase_group_id, "
        "p.cluster_id, p.placed_by "
        "from engram_clustered_rows as r "
        f"inner join {dbt.this} as p "
        "on p.pattern_id = r.pattern_id and p.description_hash = r.description_hash"
    )


def needs_recluster(dbt, session):
    """The drift bound (engram.numeric.incremental.drift_exceeded): rows placed
    incrementally since the last full clustering, old ones and new ones, over all rows
    (read from _scratch's tables)."""
    total, old, placed_before = session.sql(
        "select (select count(*) from engram_clustered_rows), "
        "(select count(*) from engram_clustered_old), "
        f"(select count(*) from engram_clustered_old where placed_by <> '{PLACED_BY_CLUSTERING}')"
    ).fetchall()[0]
    share = float(dbt.config.get("recluster_drift_share"))
    return drift_exceeded(placed_before + (total - old), total, share)


def _drop_scratch(session):
    session.execute("drop view if exists engram_clustered_staged")
    session.execute("drop table if exists engram_clustered_rows")
    session.execute("drop table if exists engram_clustered_old")


def placed_by_text(dbt, session):
    """The incremental placement run once per distinct description, not per pattern
    (engram.numeric.incremental.place_texts_two_levels): the distinct texts with their
    old rows' clusters come from SQL, each text's ids are joined back to its rows in SQL,
    and the rows of patterns new or re-texted since the table was written are returned
    (an old pattern's text keeps its group and theme, so its row is as stored), as a
    DuckDB relation over _scratch's tables (read when dbt writes it)."""
    texts = session.sql(
        """
        with per_text as (
            select description_hash, min(pattern_id) as first_key, count(*) as n_rows,
                   any_value(description) as description
            from engram_clustered_rows group by description_hash
        ),
        old as (
            select description_hash, any_value(theme_id) as theme_id,
                   any_value(paraphrase_group_id) as paraphrase_group_id,
                   any_value(cluster_id) as cluster_id
            from engram_clustered_old group by description_hash
        )
        select per_text.*, coalesce(old.theme_id, '') as old_theme,
               coalesce(old.paraphrase_group_id, '') as old_group,
               coalesce(old.cluster_id, -1) as old_number
        from per_text left join old using (description_hash)
        order by first_key
        """
    ).to_arrow_table()
    keys = np.asarray(texts.column("description_hash").to_pylist(), dtype=object)
    distinct = DistinctTexts(
        keys=keys,
        texts=np.asarray(texts.column("description").to_pylist(), dtype=object),
        first_key=np.asarray(texts.column("first_key").to_pylist(), dtype=object),
        n_rows=texts.column("n_rows").to_numpy(),
        old_theme=np.asarray(texts.column("old_theme").to_pylist(), dtype=object),
        old_group=np.asarray(texts.column("old_group").to_pylist(), dtype=object),
        old_number=texts.column("old_number").to_numpy(),
    )
    x = vectors_in_order(dbt.ref("stg_patterns"), keys, BATCH)

    def members(text_indices):
        session.register(
            "engram_clustered_founding",
            pa.table({"i": text_indices.tolist(), "h": keys[text_indices].tolist()}),
        )
        try:
            rows = session.sql(
                "select f.i, r.pattern_id from engram_clustered_rows as r "
                "inner join engram_clustered_founding as f on f.h = r.description_hash"
            ).to_arrow_table()
        finally:
            session.unregister("engram_clustered_founding")
        return rows.column("i").to_numpy(), np.asarray(rows.column("pattern_id").to_pylist())

    placement = place_texts_two_levels(
        distinct,
        x,
        theme_threshold=float(dbt.config.get("theme_threshold")),
        paraphrase_threshold=float(dbt.config.get("cluster_merge_threshold")),
        members=members,
    )
    per_text = pa.table(
        {
            "description_hash": pa.array(keys.tolist(), type=pa.string()),
            "cluster_id": pa.array(placement.numbers, type=pa.int64()),
            "theme_id": pa.array(
                placement.theme_ids[placement.theme_labels].tolist(), type=pa.string()
            ),
            "paraphrase_group_id": pa.array(
                placement.group_ids[placement.group_labels].tolist(), type=pa.string()
            ),
        }
    )
    # a lazy relation, not Arrow: dbt-duckdb writes a relation with `create table as
    # select` on this connection, where the scratch tables and the registered texts still
    # are
    session.register("engram_clustered_texts", per_text)
    return session.sql(
        f"""
        select r.pattern_id, r.description_hash, t.cluster_id, t.theme_id,
               t.paraphrase_group_id, '{PLACED_BY_JOIN}' as placed_by
        from engram_clustered_rows as r
        inner join engram_clustered_texts as t using (description_hash)
        anti join engram_clustered_old as o using (pattern_id)
        """
    )


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
        # a table from before the split (issue 18) loses its per-group columns
        on_schema_change="sync_all_columns",
    )
    columns = session.sql(f"select * from {dbt.this} limit 0").columns if dbt.is_incremental else []
    incremental = "placed_by" in columns
    result = None
    if incremental and not anything_changed(dbt, session):
        result = session.sql(f"select {LISTED} from {dbt.this} limit 0").to_arrow_table()
    elif incremental:
        _scratch(dbt, session)
        try:
            if not needs_recluster(dbt, session):
                # reads the scratch tables when dbt writes it: they go with this
                # connection (temporary), after the model
                result = placed_by_text(dbt, session)
        finally:
            if result is None:
                _drop_scratch(session)
    if result is None:  # a first or full build, or a re-cluster past the drift bound
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
            vectors_by_description(staged).to_arrow_reader(BATCH),
            "description_hash",
        )
        theme_threshold = float(dbt.config.get("theme_threshold"))
        paraphrase_threshold = float(dbt.config.get("cluster_merge_threshold"))
        if incremental:
            result = refreshed(dbt, session, patterns, x, theme_threshold, paraphrase_threshold)
        else:
            result = two_level_assignment(
                patterns,
                theme_threshold=theme_threshold,
                paraphrase_threshold=paraphrase_threshold,
                x=x,
            )
            placed = pa.array([PLACED_BY_CLUSTERING] * result.num_rows, type=pa.string())
            result = result.append_column("placed_by", placed)
    return result
