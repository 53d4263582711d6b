"""Each pattern's nearest other patterns with cosine >= var('similarity_threshold').

kNN runs once per distinct description (engram/neighbors.py: exact blocked matrix products
up to 20k distinct texts, an inverted-file search over k-means leaves above); patterns
sharing a description are each other's first neighbours at similarity 1.0, then come the
patterns of the neighbouring texts.
At most var('similar_pairs_k') rows per pattern; patterns without an embedding get none.

Incremental (README "Incremental builds"): a build searches for the patterns loaded since
the newest one already in the table (new x all), finds the descriptions a new one can
enter the list of (similarity at or above that list's k-th, or the threshold when it is
not full: a new neighbour, or one more pattern with a neighbouring description) plus the
patterns that listed a changed pattern, and recomputes the lists of those alone;
delete+insert on pattern_id merges in the ones that came out different. Up to 20k
distinct descriptions that is the full build's exact answer. Every list carries the
stamp of the write that wrote it (`written_at`, engram.numeric.incremental.write_stamp):
a refresh's data tests check the lists it wrote alone (macros/changed_rows.sql,
refreshed_rows()), and the serving copy syncs the patterns whose stamps changed.
"""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engram.numeric.clustering import embedding_matrix, normalize, vectors_by_description
from engram.numeric.incremental import WRITE_STAMP, begin_stamped_write, key_digests, stamp_column
from engram.numeric.neighbors import (
    EXACT_MAX_ROWS,
    Neighbors,
    expand_duplicates,
    leaf_index,
    nearest_neighbors,
    neighbors_of,
)

FLOOR_SLACK = 1e-5  # float32 rounding between two builds' products, with margin

SCHEMA = pa.schema(
    [
        ("pattern_id", pa.string()),
        ("similar_pattern_id", pa.string()),
        ("similarity", pa.float64()),
        ("rank", pa.int64()),
        (WRITE_STAMP, pa.timestamp("us")),
    ]
)


def changed_patterns(dbt, session):
    """pattern_ids loaded after the newest pattern the table already covers, and the
    patterns whose lists name one of them; None when the table must be built whole."""
    this = dbt.this
    patterns = dbt.ref("stg_patterns")
    session.register(
        "engram_pairs_patterns", patterns.project("pattern_id, loaded_at").to_arrow_table()
    )
    try:
        (mark,) = session.sql(
            "select max(p.loaded_at) from engram_pairs_patterns as p "
            f"semi join {this} as t on t.pattern_id = p.pattern_id"
        ).fetchall()[0]
        if mark is None:
            return None
        changed = session.sql(
            "select pattern_id from engram_pairs_patterns where loaded_at > ?", params=[mark]
        ).to_arrow_table()
    finally:
        session.unregister("engram_pairs_patterns")
    changed_ids = changed.column("pattern_id").to_pylist()
    if not changed_ids:
        return set()
    session.register("engram_pairs_changed", changed)
    try:
        listing = session.sql(
            f"select distinct pattern_id from {this} "
            "where similar_pattern_id in (select pattern_id from engram_pairs_changed)"
        ).fetchall()
    finally:
        session.unregister("engram_pairs_changed")
    return set(changed_ids) | {row[0] for row in listing}


def list_floors(dbt, session, ids, key_of_row, n_keys, k):
    """Per description: the similarity a new neighbour must reach to enter its patterns'
    lists. A pattern with k rows takes a newcomer only at >= its k-th similarity; a
    shorter list takes anything over the threshold (floor -inf here). A description's
    floor is the lowest over its patterns, so no list that could change is missed. The
    stored similarities were clamped to 1.0 and block products can differ in the last
    bits between builds, so the floor is lowered by FLOOR_SLACK: a few extra lists
    recomputed, never one missed. `ids` is the Arrow array of the rows' pattern ids."""
    session.register("engram_pairs_rows", pa.table({"pattern_id": ids, "row": np.arange(len(ids))}))
    try:
        full = session.sql(
            "select rows.row, lists.kth from engram_pairs_rows as rows inner join ("
            f"select pattern_id, min(similarity) as kth from {dbt.this} group by pattern_id "
            f"having count(*) >= {int(k)}) as lists using (pattern_id)"
        ).fetchnumpy()
    finally:
        session.unregister("engram_pairs_rows")
    per_row = np.full(len(ids), -np.inf)
    per_row[np.asarray(full["row"], dtype=np.int64)] = np.asarray(full["kth"], dtype=np.float64)
    floors = np.full(n_keys, np.inf)
    np.minimum.at(floors, key_of_row, per_row)
    return floors - FLOOR_SLACK


def model(dbt, session):
    dbt.config(
        materialized="incremental",
        incremental_strategy="delete+insert",
        unique_key="pattern_id",
        # written_at, new in older warehouses, replaced refreshed_after (a watermark)
        on_schema_change="sync_all_columns",
    )
    k = int(dbt.config.get("similar_pairs_k"))
    threshold = float(dbt.config.get("similarity_threshold"))
    stamped, stamp = begin_stamped_write(dbt, session)
    changed = changed_patterns(dbt, session) if stamped else None
    found = pairs(dbt, session, changed, k, threshold, stamp)
    return found if changed is None else lists_that_differ(dbt, session, found)


def lists_that_differ(dbt, session, found):
    """The recomputed lists that differ from the stored ones (or are new), whole: what
    delete+insert on pattern_id must write. A refresh recomputes every list a change
    could enter, most of which it does not (at 1M patterns after +1%: 619k lists
    recomputed, 105k different); writing only those keeps the delete and insert
    proportional to what changed. Lists are compared by count and an order-free sum of
    row hashes."""
    if found.num_rows == 0:
        return found
    row = "hash(similar_pattern_id, similarity, rank)"
    session.register("engram_pairs_found", found)
    try:
        found_digests = key_digests("engram_pairs_found", "pattern_id", row)
        stored_digests = key_digests(
            str(dbt.this),
            "pattern_id",
            row,
            where="pattern_id in (select pattern_id from engram_pairs_found)",
        )
        differ = session.sql(
            f"""
            select found.pattern_id
            from ({found_digests}) as found
            left join ({stored_digests}) as stored on stored.pattern_id = found.pattern_id
            where stored.pattern_id is null or stored.n <> found.n or stored.d <> found.d
            """
        ).to_arrow_table()
    finally:
        session.unregister("engram_pairs_found")
    return found.filter(pc.is_in(found.column("pattern_id"), value_set=differ.column(0)))


def pairs(dbt, session, changed, k, threshold, stamp):
    """Every pattern's list (changed None), or only the lists a change can touch; each row
    with `stamp` (written_at)."""
    if changed is not None and not changed:
        return SCHEMA.empty_table()
    embedded = dbt.ref("stg_patterns").filter("embedding is not null")
    # ids sorted, each with its description's number in hash order (the order of
    # vectors_by_description's one vector per description), numbered in SQL: np.unique
    # over 1M hashes took 1.8 s. Fetching every pattern's vector sorted by id held 1M
    # embeddings (1.5 GB) in DuckDB's buffer pool, past profiles.yml's memory_limit.
    embedded.project("pattern_id, description_hash").create_view(
        "engram_pairs_embedded", replace=True
    )
    try:
        patterns = session.sql(
            "select pattern_id, "
            "(dense_rank() over (order by description_hash) - 1)::bigint as key_of_row "
            "from engram_pairs_embedded order by pattern_id"
        ).to_arrow_table()
    finally:
        session.execute("drop view if exists engram_pairs_embedded")
    vectors = vectors_by_description(embedded).to_arrow_table()
    ids = patterns.column("pattern_id").combine_chunks()
    key_of_row = patterns.column("key_of_row").to_numpy()
    n_keys = vectors.num_rows
    if len(ids) and int(key_of_row.max()) + 1 != n_keys:
        raise ValueError("pattern_similar_pairs: description hashes and vectors disagree")
    x = embedding_matrix(vectors.column("embedding"))  # one row per distinct description
    if changed is None:
        neighbours = nearest_neighbors(x, k, min_similarity=threshold)
        scope = None
    else:
        hit = pc.is_in(ids, value_set=pa.array(sorted(changed), pa.string()))
        touched_keys = np.zeros(n_keys, dtype=bool)
        touched_keys[np.unique(key_of_row[hit.to_numpy(zero_copy_only=False)])] = True
        # the inverted file both searches below probe, built once (above EXACT_MAX_ROWS)
        leaves = leaf_index(normalize(x)) if n_keys > EXACT_MAX_ROWS else None
        # descriptions near a changed one: their lists may now hold it
        _, near = neighbors_of(
            x,
            np.flatnonzero(touched_keys),
            k,
            min_similarity=threshold,
            near_floor=list_floors(dbt, session, ids, key_of_row, n_keys, k),
            leaves=leaves,
        )
        scope = touched_keys | near
        redo = np.flatnonzero(scope)
        found, _ = neighbors_of(x, redo, k, min_similarity=threshold, leaves=leaves)
        kk = found.index.shape[1]
        neighbours = Neighbors(
            np.full((n_keys, kk), -1, np.int64),
            np.full((n_keys, kk), -np.inf, np.float32),
        )
        neighbours.index[redo] = found.index
        neighbours.similarity[redo] = found.similarity
    # only the rows of recomputed descriptions (all of them on a full build)
    row, other, similarity, rank = expand_duplicates(key_of_row, neighbours, k, keys=scope)
    keep = similarity >= threshold  # rows are best first, so ranks stay 1..j
    return pa.table(
        {
            "pattern_id": ids.take(pa.array(row[keep])),
            "similar_pattern_id": ids.take(pa.array(other[keep])),
            "similarity": pa.array(np.minimum(similarity[keep], 1.0), type=pa.float64()),
            "rank": pa.array(rank[keep], type=pa.int64()),
            WRITE_STAMP: stamp_column(int(keep.sum()), stamp),
        },
        schema=SCHEMA,
    )
