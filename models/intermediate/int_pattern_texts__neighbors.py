"""Per distinct description, its k + 1 nearest patterns with cosine >= var('similarity_threshold'):
what pattern_similar_pairs lists per pattern, stored once per text.

kNN runs once per distinct description (engram/neighbors.py: exact blocked matrix products
up to 20k distinct texts, an inverted-file search over k-means leaves above). A
description's list holds first its own patterns (similarity 1.0, in id order), then the
patterns of the neighbouring descriptions, best first (engram.numeric.neighbors.key_lists);
a pattern's own list is its description's minus itself, first k, which the view
pattern_similar_pairs takes at read time (macros/pattern_similar_pairs_rows.sql). Stored per
pattern (10M rows at 1M patterns over 24k descriptions), a pattern joining a description
rewrote the lists of all its members: a +1% refresh wrote 105k lists (1.04M rows) and
synced them to the serving copy; per description it writes the few thousand texts whose
list changed.

Incremental (README "Incremental builds"): a build searches for the descriptions of the
patterns loaded since the previous write (`patterns_through`) and of the lists that named
one of them, then the descriptions whose list a changed one can enter (similarity at or
above the list's last, the (k+1)-th, or the threshold when the list is not full), and
recomputes the lists of those alone; delete+insert on description_hash merges in the ones
that came out different. Up to 20k distinct descriptions that is the full build's exact
answer. Every list carries the stamp of the write that wrote it (`written_at`,
engram.numeric.incremental.write_stamp): a refresh's data tests check the lists it wrote
alone (macros/changed_rows.sql, refreshed_rows()), and the serving copy syncs the
descriptions whose stamps changed.
"""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engram.numeric.clustering import embedding_matrix, normalize, vectors_by_description
from engram.numeric.incremental import (
    PATTERNS_THROUGH,
    WRITE_STAMP,
    begin_stamped_write,
    key_digests,
    stamp_column,
)
from engram.numeric.neighbors import (
    EXACT_MAX_ROWS,
    Neighbors,
    key_lists,
    leaf_index,
    nearest_neighbors,
    neighbors_of,
)

FLOOR_SLACK = 1e-5  # float32 rounding between two builds' products, with margin

SCHEMA = pa.schema(
    [
        ("description_hash", pa.string()),
        ("list_rank", pa.int64()),
        ("similar_pattern_id", pa.string()),
        ("similarity", pa.float64()),
        ("same_description", pa.bool_()),
        ("last_same_description_id", pa.string()),
        (PATTERNS_THROUGH, pa.timestamp("us")),
        (WRITE_STAMP, pa.timestamp("us")),
    ]
)


def changed_descriptions(dbt, session):
    """The description hashes whose lists a change can touch: those of the patterns loaded
    after the previous write's `patterns_through` and those of the lists naming one of
    them; None when the table must be built whole (it is empty)."""
    this = dbt.this
    (mark,) = session.sql(f"select max({PATTERNS_THROUGH}) from {this}").fetchall()[0]
    if mark is None:
        return None
    dbt.ref("stg_patterns").project("pattern_id, description_hash, loaded_at").create_view(
        "engram_pairs_patterns", replace=True
    )
    try:
        changed = session.sql(
            "select pattern_id, description_hash from engram_pairs_patterns where loaded_at > ?",
            params=[mark],
        ).to_arrow_table()
    finally:
        session.execute("drop view if exists engram_pairs_patterns")
    if changed.num_rows == 0:
        return set()
    session.register("engram_pairs_changed", changed)
    try:
        listing = session.sql(
            f"select distinct description_hash from {this} "
            "where similar_pattern_id in (select pattern_id from engram_pairs_changed)"
        ).fetchall()
    finally:
        session.unregister("engram_pairs_changed")
    hashes = {h for h in changed.column("description_hash").to_pylist() if h is not None}
    return hashes | {row[0] for row in listing}


def list_floors(dbt, session, hashes, k):
    """Per description (in the order of `hashes`): the similarity a new neighbour must
    reach to enter its list. A list of k + 1 takes a newcomer only at >= its last
    similarity; a shorter one takes anything over the threshold (floor -inf here). The
    stored similarities were clamped to 1.0 and block products can differ in the last
    bits between builds, so the floor is lowered by FLOOR_SLACK: a few extra lists
    recomputed, never one missed."""
    session.register(
        "engram_pairs_keys", pa.table({"description_hash": hashes, "key": np.arange(len(hashes))})
    )
    try:
        full = session.sql(
            "select keys.key, lists.last from engram_pairs_keys as keys inner join ("
            f"select description_hash, min(similarity) as last from {dbt.this} "
            f"group by description_hash having max(list_rank) > {int(k)}) as lists "
            "using (description_hash)"
        ).fetchnumpy()
    finally:
        session.unregister("engram_pairs_keys")
    floors = np.full(len(hashes), -np.inf)
    floors[np.asarray(full["key"], dtype=np.int64)] = np.asarray(full["last"], dtype=np.float64)
    return floors - FLOOR_SLACK


def model(dbt, session):
    dbt.config(
        materialized="incremental",
        incremental_strategy="delete+insert",
        unique_key="description_hash",
        on_schema_change="sync_all_columns",
    )
    k = int(dbt.config.get("similar_pairs_k"))
    threshold = float(dbt.config.get("similarity_threshold"))
    stamped, stamp = begin_stamped_write(dbt, session)
    # read before the changes below, so a pattern loaded meanwhile is looked at next time
    (through,) = dbt.ref("stg_patterns").aggregate("max(loaded_at)").fetchall()[0]
    changed = changed_descriptions(dbt, session) if stamped else None
    found = lists(dbt, session, changed, k, threshold, (through, stamp))
    return found if changed is None else lists_that_differ(dbt, session, found)


def lists_that_differ(dbt, session, found):
    """The recomputed lists that differ from the stored ones (or are new), whole: what
    delete+insert on description_hash must write. A refresh recomputes every list a change
    could enter, most of which it does not; writing only those keeps the delete and insert
    proportional to what changed. Lists are compared by count and an order-free sum of
    row hashes."""
    if found.num_rows == 0:
        return found
    row = (
        "hash(list_rank, similar_pattern_id, similarity, same_description, "
        "last_same_description_id)"
    )
    session.register("engram_pairs_found", found)
    try:
        found_digests = key_digests("engram_pairs_found", "description_hash", row)
        stored_digests = key_digests(
            str(dbt.this),
            "description_hash",
            row,
            where="description_hash in (select description_hash from engram_pairs_found)",
        )
        differ = session.sql(
            f"""
            select found.description_hash
            from ({found_digests}) as found
            left join ({stored_digests}) as stored
                on stored.description_hash = found.description_hash
            where stored.description_hash is null or stored.n <> found.n or stored.d <> found.d
            """
        ).to_arrow_table()
    finally:
        session.unregister("engram_pairs_found")
    return found.filter(pc.is_in(found.column("description_hash"), value_set=differ.column(0)))


def lists(dbt, session, changed, k, threshold, stamps):
    """Every description's list (changed None), or only the lists a change can touch; each
    row with the stamps (patterns_through, written_at)."""
    if changed is not None and not changed:
        return SCHEMA.empty_table()
    embedded = dbt.ref("stg_patterns").filter("embedding is not null")
    # ids sorted, each with its description's number in hash order (the order of
    # vectors_by_description's one vector per description), numbered in SQL: np.unique
    # over 1M hashes took 1.8 s. Fetching every pattern's vector sorted by id held 1M
    # embeddings (1.5 GB) in DuckDB's buffer pool, past profiles.yml's memory_limit.
    # The distinct descriptions are numbered and joined back: a dense_rank() over the
    # 1M patterns sorted them all by hash (1.0-1.4 s against 0.5-0.6 s at 1M patterns).
    embedded.project("pattern_id, description_hash").create_view(
        "engram_pairs_embedded", replace=True
    )
    try:
        patterns = session.sql(
            "with keys as (select description_hash, "
            "(row_number() over (order by description_hash) - 1)::bigint as key_of_row "
            "from (select distinct description_hash from engram_pairs_embedded)) "
            "select embedded.pattern_id, keys.key_of_row from engram_pairs_embedded as embedded "
            "inner join keys "
            "on embedded.description_hash is not distinct from keys.description_hash "
            "order by embedded.pattern_id"
        ).to_arrow_table()
    finally:
        session.execute("drop view if exists engram_pairs_embedded")
    vectors = vectors_by_description(embedded).to_arrow_table()
    ids = patterns.column("pattern_id").combine_chunks()
    key_of_row = patterns.column("key_of_row").to_numpy()
    hashes = vectors.column("description_hash").combine_chunks()
    n_keys = vectors.num_rows
    if len(ids) and int(key_of_row.max()) + 1 != n_keys:
        raise ValueError("int_pattern_texts__neighbors: description hashes and vectors disagree")
    x = embedding_matrix(vectors.column("embedding"))  # one row per distinct description
    if changed is None:
        neighbours = nearest_neighbors(x, k, min_similarity=threshold)
        scope = None
    else:
        touched_keys = pc.is_in(hashes, value_set=pa.array(sorted(changed), pa.string()))
        touched_keys = touched_keys.to_numpy(zero_copy_only=False)
        # the inverted file both searches below probe, built once (above EXACT_MAX_ROWS)
        leaves = leaf_index(normalize(x)) if n_keys > EXACT_MAX_ROWS else None
        # descriptions near a changed one: their lists may now hold it
        _, near = neighbors_of(
            x,
            np.flatnonzero(touched_keys),
            k,
            min_similarity=threshold,
            near_floor=list_floors(dbt, session, hashes, k),
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
    # only the lists of recomputed descriptions (all of them on a full build); a list is
    # best first, so the threshold cuts its tail and the ranks stay 1..j
    listed = key_lists(key_of_row, neighbours, k, keys=scope)
    keep = listed.similarity >= threshold
    owner, member = listed.owner[keep], listed.member[keep]
    same = listed.same_key[keep]
    # a list's own patterns come first, in id order: the last of them is the highest id
    # of the description's patterns in its list (a pattern is listed iff its id is <= it)
    last_own = np.full(n_keys, -1, np.int64)
    np.maximum.at(last_own, owner[same], np.flatnonzero(same))
    n = int(keep.sum())
    through, stamp = stamps
    return pa.table(
        {
            "description_hash": hashes.take(pa.array(owner)),
            "list_rank": pa.array(listed.position[keep] + 1, type=pa.int64()),
            "similar_pattern_id": ids.take(pa.array(member)),
            "similarity": pa.array(np.minimum(listed.similarity[keep], 1.0), type=pa.float64()),
            "same_description": pa.array(same),
            "last_same_description_id": ids.take(pa.array(member[last_own[owner]])),
            PATTERNS_THROUGH: stamp_column(n, through),
            WRITE_STAMP: stamp_column(n, stamp),
        },
        schema=SCHEMA,
    )
