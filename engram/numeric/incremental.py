"""Clusters that grow with the data instead of being recomputed: the incremental half of
engram/numeric/clustering.py.

A full clustering (average linkage cut at a threshold) costs O(n log n) k-means passes plus
a leaf-local UPGMA per round; rerunning it after every small ingest made a 1% refresh cost
most of a full build, and gave every touched cluster a new id. Here a refresh places only
the new distinct texts:

* join: a new text joins the existing cluster whose members it is most similar to on
  average, mean cosine = x . sum(members) / |members| (counting distinct texts, as the full
  clustering does), when that mean is at least the level's threshold. That is the very
  criterion average linkage merges by, applied to a singleton;
* found: the texts that join none are clustered among themselves by the full algorithm and
  form new clusters.

Ids: a cluster's id is fixed when it is founded (the hash of its founding members, the
members it had when a clustering created it) and never changes as members join. A full
clustering (`--full-refresh`, or a re-cluster because the drift bound was passed) makes
fresh clusters; on a drift re-cluster each new cluster keeps the id of the old cluster it
shares the most members with (one to one, largest overlaps first), the others get
founding-member hashes. `--full-refresh` starts from nothing: every id is the hash of the
members at that moment.

Drift bound: incremental placement never splits or merges old clusters, so the partition
drifts from what a full clustering would make as the share of incrementally placed texts
grows. Once more than `drift_share` of the rows were placed incrementally since the last
full clustering, the next build re-clusters everything (README "Incremental builds").
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from engram.numeric.clustering import (
    DEFAULT_LEAF_SIZE,
    KeyedRows,
    canonical_labels,
    cluster_embeddings,
    group_sums,
    normalize,
    unique_strings,
)

__all__ = [
    "BOOKKEEPING",
    "DEFAULT_DRIFT_SHARE",
    "INPUT_DIGEST",
    "PATTERNS_THROUGH",
    "PLACED_BY_CLUSTERING",
    "PLACED_BY_JOIN",
    "WRITE_STAMP",
    "Extension",
    "TextPlacement",
    "begin_stamped_write",
    "carry_ids",
    "drift_exceeded",
    "extend_labels",
    "founding_ids",
    "key_digests",
    "labels_of_ids",
    "stamp_column",
    "write_stamp",
]

DEFAULT_DRIFT_SHARE = 0.2
PLACED_BY_CLUSTERING = "clustering"  # the row was placed by a full clustering
PLACED_BY_JOIN = "incremental"  # the row joined or founded a cluster incrementally
_BLOCK_FLOATS = 1 << 25  # new texts x old clusters similarity block: 128 MB of float32


@dataclass(frozen=True)
class Extension:
    """Labels of the distinct texts after an incremental placement."""

    labels: np.ndarray  # (m,) per distinct text: old label, or a new one >= n_old
    joined: int  # new texts that joined an existing cluster
    founded: int  # clusters founded by the texts that joined none


def extend_labels(
    x: np.ndarray,
    old: np.ndarray,
    threshold: float,
    *,
    leaf_size: int = DEFAULT_LEAF_SIZE,
    seed: int = 0,
) -> Extension:
    """Place the new distinct texts (old label -1) among the old clusters (labels >= 0).

    `x` holds one vector per distinct text. Old texts keep their label. A new text joins the
    old cluster with the highest mean cosine to its members if that is >= `threshold`
    (ties to the smaller label); the rest are clustered among themselves by the full
    algorithm and numbered after the largest old label, in order of first appearance.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    x = normalize(x)
    old = np.asarray(old, dtype=np.int64)
    if len(old) != len(x):
        raise ValueError(f"{len(x)} vectors but {len(old)} old labels")
    labels = old.copy()
    fresh = np.flatnonzero(old < 0)
    known = np.flatnonzero(old >= 0)
    n_old = int(old.max()) + 1 if len(known) else 0
    if len(fresh) == 0:
        return Extension(labels, 0, 0)
    joined = np.full(len(fresh), -1, dtype=np.int64)
    if n_old:
        sums = group_sums(x[known], old[known], n_old)
        counts = np.bincount(old[known], minlength=n_old).astype(np.float32)
        # mean similarity to a cluster = x . sum / count; a label nobody holds any more
        # (all its texts changed) has count 0 and can take no one
        scale = np.divide(1.0, counts, out=np.zeros_like(counts), where=counts > 0)
        centre = sums * scale[:, None]
        block = max(1, _BLOCK_FLOATS // max(1, n_old))
        for lo in range(0, len(fresh), block):
            rows = fresh[lo : lo + block]
            sims = x[rows] @ centre.T
            best = np.argmax(sims, axis=1)
            value = sims[np.arange(len(rows)), best]
            # the same rounding slack as the full clustering's cut (clustering.py)
            joined[lo : lo + block] = np.where(value >= threshold - 1e-6, best, -1)
    labels[fresh] = joined
    alone = fresh[joined < 0]
    founded = 0
    if len(alone):
        local = cluster_embeddings(x[alone], threshold, leaf_size=leaf_size, seed=seed)
        labels[alone] = local + n_old
        founded = int(local.max()) + 1
    return Extension(labels, int((joined >= 0).sum()), founded)


def founding_ids(labels: np.ndarray, keys: np.ndarray, prefix: str) -> dict[int, str]:
    """Id of each label from its members' keys: `prefix` + 12 hex digits of sha256 over the
    sorted keys (the same rule as clustering.stable_ids), computed once, at founding."""
    labels = np.asarray(labels, dtype=np.int64)
    keys = np.asarray(keys).astype(str)
    order = np.lexsort((keys, labels))
    out: dict[int, str] = {}
    if len(order) == 0:
        return out
    sorted_labels = labels[order]
    cuts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1], True])
    for lo, hi in itertools.pairwise(cuts):
        members = keys[order[lo:hi]].tolist()
        digest = hashlib.sha256("\n".join(members).encode()).hexdigest()
        out[int(sorted_labels[lo])] = f"{prefix}{digest[:12]}"
    return out


def carry_ids(new_labels: np.ndarray, old_ids: np.ndarray) -> dict[int, str]:
    """After a re-cluster: new label -> the old id it carries on, one to one.

    `old_ids` is the previous id per row (None or '' for rows that had none). Pairs
    (new label, old id) are taken by overlap, largest first (ties: smaller label, then
    smaller id); a label or an id already taken is skipped, so no two clusters share an id.
    """
    new_labels = np.asarray(new_labels, dtype=np.int64)
    old = np.asarray([v if v else "" for v in old_ids], dtype=object).astype(str)
    has = old != ""
    if not has.any():
        return {}
    pairs, overlap = np.unique(
        np.rec.fromarrays([new_labels[has], old[has]], names="label,id"), return_counts=True
    )
    order = sorted(
        range(len(pairs)),
        key=lambda i: (-int(overlap[i]), int(pairs[i]["label"]), str(pairs[i]["id"])),
    )
    taken_labels: set[int] = set()
    taken_ids: set[str] = set()
    out: dict[int, str] = {}
    for i in order:
        label, old_id = int(pairs[i]["label"]), str(pairs[i]["id"])
        if label in taken_labels or old_id in taken_ids:
            continue
        out[label] = old_id
        taken_labels.add(label)
        taken_ids.add(old_id)
    return out


def drift_exceeded(placed_incrementally: int, total: int, drift_share: float) -> bool:
    """True when more than `drift_share` of `total` rows were placed incrementally since
    the last full clustering: the next build re-clusters everything."""
    if not 0.0 <= drift_share <= 1.0:
        raise ValueError(f"drift share must be in [0, 1], got {drift_share}")
    return total > 0 and placed_incrementally / total > drift_share


def dense(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 0..k-1 by first appearance (for the describing functions)."""
    return canonical_labels(np.asarray(labels, dtype=np.int64))


# --------------------------------------------------------------------------- per level


@dataclass(frozen=True)
class Placement:
    """One level's partition after a refresh, per row."""

    labels: np.ndarray  # (n,) 0..k-1 dense, by first appearance
    ids: np.ndarray  # (k,) id per dense label
    placed_by: np.ndarray  # (n,) PLACED_BY_CLUSTERING or PLACED_BY_JOIN


def _distinct(group_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First row and row -> distinct-key index, distinct keys in order of first appearance
    (so labels numbered by first appearance follow the row order, as the full clustering's)."""
    _, first, inverse = unique_strings(group_keys)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return first[order], rank[inverse.reshape(-1)]


def place_level(
    row_keys: np.ndarray,
    group_keys: np.ndarray,
    x: np.ndarray | KeyedRows,
    old_ids: np.ndarray,
    threshold: float,
    prefix: str,
    *,
    recluster: bool,
    leaf_size: int = DEFAULT_LEAF_SIZE,
    seed: int = 0,
) -> Placement:
    """Partition rows at one cut, reusing the previous ids (`old_ids` per row, '' where the
    row is new or its text changed).

    recluster=False: old rows stay where they were; new texts join or found clusters
    (extend_labels). recluster=True: a full clustering, ids carried over by overlap
    (carry_ids). Ids of founded clusters are founding_ids over their members now."""
    row_keys = np.asarray(row_keys).astype(str)
    group_keys = np.asarray(group_keys).astype(str)
    old_ids = np.asarray([v if v else "" for v in old_ids], dtype=object).astype(str)
    first, key_of_row = _distinct(group_keys)
    xk = normalize(x[first])
    is_old = old_ids != ""
    if recluster:
        key_labels = cluster_embeddings(xk, threshold, leaf_size=leaf_size, seed=seed)
        labels = key_labels[key_of_row]
        named = carry_ids(labels, old_ids)
        placed_by = np.full(len(labels), PLACED_BY_CLUSTERING, dtype=object)
    else:
        codes_of, _, code = unique_strings(old_ids[is_old])
        key_old = np.full(len(first), -1, dtype=np.int64)
        key_old[key_of_row[is_old]] = code.reshape(-1)
        # a text with an old row is old for all its rows (identical texts share a cluster)
        ext = extend_labels(xk, key_old, threshold, leaf_size=leaf_size, seed=seed)
        labels = ext.labels[key_of_row]
        named = {c: str(v) for c, v in enumerate(codes_of.tolist())}
        placed_by = np.where(is_old, "", PLACED_BY_JOIN).astype(object)
    unnamed = np.isin(labels, np.fromiter(named, dtype=np.int64, count=len(named)), invert=True)
    named.update(founding_ids(labels[unnamed], row_keys[unnamed], prefix))
    dense_labels = dense(labels)
    ids = np.empty(int(dense_labels.max()) + 1 if len(labels) else 0, dtype=object)
    ids[dense_labels] = [named[int(v)] for v in labels.tolist()]
    return Placement(dense_labels, ids, placed_by)


def numbers_for(
    ids_per_row: np.ndarray, old_ids: np.ndarray, old_numbers: np.ndarray
) -> np.ndarray:
    """Integer cluster numbers that stay with their cluster: a row whose cluster id existed
    before takes that cluster's old number; clusters new to this build take the next free
    numbers after the largest old one, in order of first appearance."""
    ids_per_row = np.asarray(ids_per_row).astype(str)
    known: dict[str, int] = {}
    for cid, number in zip(
        np.asarray(old_ids).tolist(), np.asarray(old_numbers).tolist(), strict=True
    ):
        if cid and number is not None and number >= 0:
            known.setdefault(str(cid), int(number))
    next_free = max(known.values(), default=-1) + 1
    distinct, first, inverse = unique_strings(ids_per_row)
    number = np.array([known.get(cid, -1) for cid in distinct.tolist()], dtype=np.int64)
    fresh = np.flatnonzero(number < 0)
    # new clusters numbered in order of first appearance
    fresh = fresh[np.argsort(first[fresh], kind="stable")]
    number[fresh] = next_free + np.arange(len(fresh))
    return number[inverse]


# --------------------------------------------------------------------------- the models


def _strings(table: object, column: str) -> np.ndarray:
    values = table.column(column).to_pylist()  # type: ignore[attr-defined]
    return np.asarray(["" if v is None else str(v) for v in values], dtype=object)


def _previous_rows(
    keys: np.ndarray, hashes: np.ndarray | None, previous: object, key: str, hash_column: str | None
) -> tuple[np.ndarray, np.ndarray, int]:
    """Per row: its index in `previous` (-1 if new) and whether it is old (same key and,
    when hashes are given, the same text); plus how many previous rows are gone."""
    import pandas as pd

    prev_keys = _strings(previous, key)
    index = pd.Index(prev_keys)
    if not index.is_unique:
        raise ValueError(f"the previous rows repeat a {key}")
    idx = np.asarray(index.get_indexer(keys), dtype=np.int64)
    old = idx >= 0
    if hashes is not None and hash_column is not None:
        prev_hashes = _strings(previous, hash_column)
        old &= np.where(old, prev_hashes[np.maximum(idx, 0)] == hashes, False)
    return idx, old, len(prev_keys) - int(old.sum())


def _take(values: np.ndarray, idx: np.ndarray, old: np.ndarray, missing: object) -> np.ndarray:
    out = np.full(len(idx), missing, dtype=object)
    out[old] = values[idx[old]]
    return out


def two_level_refresh(
    table: object,
    previous: object,
    *,
    theme_threshold: float,
    paraphrase_threshold: float,
    drift_share: float,
    x: np.ndarray | KeyedRows | None = None,
) -> tuple[object | None, str]:
    """int_patterns__clustered after new or changed patterns, from its previous rows
    (`x` as in clustering.two_level_table: the vectors when the table has none).

    Returns (table, mode): mode 'unchanged' (table None: nothing to place), 'incremental'
    (new texts joined or founded clusters) or 'reclustered' (the drift bound was passed:
    a full clustering, ids carried over). The table has every row, placed_by included."""
    import pyarrow as pa

    from engram.numeric.clustering import describe_level, embedding_matrix, two_level_columns

    keys = _strings(table, "pattern_id")
    hashes = _strings(table, "description_hash")
    idx, old, gone = _previous_rows(keys, hashes, previous, "pattern_id", "description_hash")
    n_new = len(keys) - int(old.sum())
    if n_new == 0 and gone == 0:
        return None, "unchanged"
    prev_placed = _take(_strings(previous, "placed_by"), idx, old, "")
    placed_before = int(np.sum(old & (prev_placed != PLACED_BY_CLUSTERING)))
    recluster = drift_exceeded(placed_before + n_new, len(keys), drift_share)
    texts = np.asarray(table.column("description").to_pylist(), dtype=object)  # type: ignore[attr-defined]
    if x is None:
        x = embedding_matrix(table.column("embedding"))  # type: ignore[attr-defined]
    old_theme = _take(_strings(previous, "theme_id"), idx, old, "")
    old_group = _take(_strings(previous, "paraphrase_group_id"), idx, old, "")
    prev_numbers = np.asarray(previous.column("cluster_id").to_pylist(), dtype=object)  # type: ignore[attr-defined]
    old_number = _take(prev_numbers, idx, old, None)
    theme = place_level(keys, hashes, x, old_theme, theme_threshold, "th_", recluster=recluster)
    group = place_level(
        keys, hashes, x, old_group, paraphrase_threshold, "pg_", recluster=recluster
    )
    theme_level = describe_level(keys, hashes, texts, x, theme.labels, theme.ids)
    group_level = describe_level(keys, hashes, texts, x, group.labels, group.ids)
    numbers = numbers_for(group.ids[group.labels], old_group, old_number)
    placed = np.where(old & (group.placed_by == ""), prev_placed, group.placed_by)
    out = two_level_columns(table, theme_level, group_level, numbers)
    out = out.append_column("placed_by", pa.array(placed.tolist(), type=pa.string()))  # type: ignore[attr-defined]
    return out, "reclustered" if recluster else "incremental"


def one_level_refresh(
    table: object,
    previous: object,
    *,
    key: str,
    id_column: str,
    threshold: float,
    drift_share: float,
) -> tuple[np.ndarray | None, np.ndarray | None, str]:
    """Cluster numbers per row of `table` (distinct texts keyed by `key`, e.g. task texts)
    after new texts arrived, from the previous rows (`key`, `id_column`, placed_by).

    Returns (numbers, placed_by, mode) with the modes of two_level_refresh; old clusters
    keep their numbers, new ones take the next free numbers."""
    keys = _strings(table, key)
    idx, old, gone = _previous_rows(keys, None, previous, key, None)
    n_new = len(keys) - int(old.sum())
    if n_new == 0 and gone == 0:
        return None, None, "unchanged"
    prev_placed = _take(_strings(previous, "placed_by"), idx, old, "")
    placed_before = int(np.sum(old & (prev_placed != PLACED_BY_CLUSTERING)))
    recluster = drift_exceeded(placed_before + n_new, len(keys), drift_share)
    from engram.numeric.clustering import embedding_matrix

    x = embedding_matrix(table.column("embedding"))  # type: ignore[attr-defined]
    old_id = _take(_strings(previous, id_column), idx, old, "")
    level = place_level(keys, keys, x, old_id, threshold, "c_", recluster=recluster)
    numbers = numbers_for(level.ids[level.labels], old_id, _to_ints(old_id))
    placed = np.where(old & (level.placed_by == ""), prev_placed, level.placed_by)
    return numbers, placed.astype(str), "reclustered" if recluster else "incremental"


def _to_ints(values: np.ndarray) -> np.ndarray:
    return np.asarray([int(v) if v != "" else None for v in values.tolist()], dtype=object)


WRITE_STAMP = "written_at"
# pattern_predictions' hash of what a pattern's rows were computed from: its cells' double
# sums may differ in the last bits between two builds of the same data, and the Spark
# path writes it null (models/marts/predictions/pattern_predictions.py)
INPUT_DIGEST = "input_digest"
# columns that say when or from what a row was written, not what it answers: two builds of
# the same data may differ in them and in nothing else, so a comparison of builds leaves
# them out by name
# int_pattern_texts__neighbors' newest loaded_at of the patterns a write saw: where the
# next refresh's changed patterns start
PATTERNS_THROUGH = "patterns_through"
BOOKKEEPING: tuple[str, ...] = (WRITE_STAMP, INPUT_DIGEST, PATTERNS_THROUGH)


def write_stamp(session: Any, this: object | None, column: str = WRITE_STAMP) -> datetime:
    """The stamp of the rows a model writes now: the wall clock (naive UTC, to the
    microsecond), moved just past the newest stamp already in `this` (the model's table;
    None on its first build) should the clock be behind it, so that stamps only grow.

    The models that rewrite some keys and keep the rest (int_pattern_texts__neighbors,
    pattern_predictions) write every key's rows whole, each write with a stamp of its own,
    on every build, full or not. So a key's rows changed exactly when its (row count,
    newest stamp) did, which two readers rely on instead of comparing every value: the
    serving copy syncs only those keys (engram.query.serving.SCOPED), and a refresh's
    data tests check only the rows of the newest stamp (macros/changed_rows.sql,
    refreshed_rows()). The stamp is never null: a build that wrote every row (the first,
    `--full-refresh`) is a write like any other."""
    now = datetime.now(UTC).replace(tzinfo=None)
    if this is not None:
        (newest,) = session.sql(f"select max({column}) from {this}").fetchall()[0]
        if newest is not None and newest >= now:
            now = newest + timedelta(microseconds=1)
    return now


def begin_stamped_write(dbt: Any, session: Any) -> tuple[bool, datetime]:
    """What a stamped model (int_pattern_texts__neighbors, pattern_predictions) does before it
    writes: (stamped, stamp). `stamped` is True when the model's table exists and its rows
    carry stamps, so the model may rewrite only the keys that changed; False on the first
    build, on `--full-refresh`, and for a table from before its rows were stamped, which is
    emptied here (delete+insert alone would keep the rows of keys that vanished since) and
    then written whole, as on a first build. `stamp` is write_stamp's: the stamp of every
    row this build writes."""
    stamped = False
    if dbt.is_incremental:
        columns = session.sql(f"select * from {dbt.this} limit 0").columns
        stamped = WRITE_STAMP in columns
        if not stamped:
            session.execute(f"delete from {dbt.this}")
    return stamped, write_stamp(session, dbt.this if stamped else None)


def key_digests(relation: str, key: str, row_hash: str, where: str = "") -> str:
    """SQL: one row per `key` of `relation` with its row count `n` and `d`, an order-free
    sum of `row_hash` over its rows. Two keys' rows are taken as equal when (n, d) are:
    how the models that rewrite only the keys whose rows differ compare the rows they
    computed with the stored ones (at 10M events an EXCEPT ALL of pattern_predictions' 4M
    rows each way took 7 s, the two digests 1 s). `where` filters the rows first."""
    condition = f" where {where}" if where else ""
    return (
        f"select {key}, count(*) as n, sum({row_hash}) as d "
        f"from {relation}{condition} group by {key}"
    )


def stamp_column(n: int, stamp: datetime) -> Any:
    """`n` copies of `stamp` as the Arrow column written_at is written with
    (timestamp[us], naive UTC): what write_stamp returned, on every row a model writes."""
    import pyarrow as pa

    return pa.array(np.full(n, np.datetime64(stamp, "us")), type=pa.timestamp("us"))


def changed_rows(session: Any, table: Any, this: object, name: str) -> Any:
    """The rows of `table` (Arrow) that differ from the model's current table `this`, on
    `table`'s columns (the stored table may hold more, from before a column was dropped):
    what an incremental Python model returns, so delete+insert rewrites only those.
    `session` is the DuckDB connection dbt hands the model; `name` a scratch view name."""
    listed = ", ".join(f'"{column}"' for column in table.column_names)
    session.register(name, table)
    try:
        return session.sql(
            f"select {listed} from {name} except select {listed} from {this}"
        ).to_arrow_table()
    finally:
        session.unregister(name)


# --------------------------------------------------------------------------- per distinct text


@dataclass(frozen=True)
class DistinctTexts:
    """A refresh's input, one entry per distinct text instead of one per row.

    With rows in pattern_id order, the entries are in order of first appearance (by
    `first_key`), which is the order the row-level functions number clusters in. At 1M
    patterns over 25k descriptions the row-level refresh spent 20 s of string work on
    1M ids and hashes (issue 18); every fact it reports but placed_by is a function of
    the text (identical texts share a cluster), sizes aside, which are sums of `n_rows`.
    """

    keys: np.ndarray  # (m,) the text's key (description_hash)
    texts: np.ndarray  # (m,) the text
    first_key: np.ndarray  # (m,) row key (pattern_id) of the text's first row
    n_rows: np.ndarray  # (m,) rows with this text
    old_theme: np.ndarray  # (m,) theme id of the text's old rows, '' when it has none
    old_group: np.ndarray  # (m,) paraphrase group id of the same, ''
    old_number: np.ndarray  # (m,) cluster_id of the same, -1


def _place_texts(
    texts: DistinctTexts,
    x: np.ndarray,
    old_ids: np.ndarray,
    threshold: float,
    prefix: str,
    members: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """place_level(recluster=False) on distinct texts: (dense label per text, id per dense
    label). `members(text_indices)` returns (text index per row, row key) of those texts'
    rows, for the founding ids of clusters founded here (their rows only)."""
    old_ids = np.asarray(old_ids, dtype=object).astype(str)
    is_old = old_ids != ""
    codes_of, _, code = unique_strings(old_ids[is_old])
    key_old = np.full(len(old_ids), -1, dtype=np.int64)
    key_old[is_old] = code.reshape(-1)
    labels = extend_labels(x, key_old, threshold).labels
    named = {c: str(v) for c, v in enumerate(codes_of.tolist())}
    unnamed = np.flatnonzero(labels >= len(codes_of))
    if len(unnamed):
        text_of_row, row_keys = members(unnamed)
        named.update(founding_ids(labels[text_of_row], np.asarray(row_keys), prefix))
    dense_labels = dense(labels)
    ids = np.empty(int(dense_labels.max()) + 1 if len(labels) else 0, dtype=object)
    ids[dense_labels] = [named[int(v)] for v in labels.tolist()]
    return dense_labels, ids


def _describe_texts_level(
    texts: DistinctTexts,
    x: np.ndarray,
    labels: np.ndarray,
    ids: np.ndarray,
    counts: Any = None,
) -> Any:
    """clustering.describe_level's ClusterLevel with one entry per distinct text instead
    of per row (the same partition gives the same facts: tests/test_incremental.py
    compares them): sizes count rows (`n_rows`), the medoid's key is its text's first row.
    `counts`: clustering.term_counts(texts.texts), shared by the two levels."""
    from engram.numeric.clustering import ClusterLevel, distinctive_terms, summarize

    summary = summarize(x, labels)
    k = len(summary.central)
    sizes = np.bincount(labels, weights=texts.n_rows, minlength=k).astype(np.int64)
    central_text = np.asarray(texts.texts, dtype=object)[summary.central]
    terms = np.array(
        [", ".join(t) for t in distinctive_terms(texts.texts, labels, counts=counts)],
        dtype=object,
    )
    label = np.array(
        [f"{central_text[c]} [{terms[c]}]" if terms[c] else central_text[c] for c in range(k)],
        dtype=object,
    )
    return ClusterLevel(
        number=labels,
        ids=ids[labels],
        sizes=sizes[labels],
        central_key=np.asarray(texts.first_key, dtype=object)[summary.central][labels],
        central_text=central_text[labels],
        terms=terms[labels],
        label=label[labels],
        similarity=summary.similarity,
    )


@dataclass(frozen=True)
class TextPlacement:
    """Both levels' partition of distinct texts after an incremental placement."""

    theme_labels: np.ndarray  # (m,) dense theme label per text
    theme_ids: np.ndarray  # (k_theme,) theme id per dense label
    group_labels: np.ndarray  # (m,) dense paraphrase-group label per text
    group_ids: np.ndarray  # (k_group,) group id per dense label
    numbers: np.ndarray  # (m,) cluster_id per text (kept numbers, next free for new groups)


def place_texts_two_levels(
    texts: DistinctTexts,
    x: np.ndarray,
    *,
    theme_threshold: float,
    paraphrase_threshold: float,
    members: Any,
) -> TextPlacement:
    """int_patterns__clustered's incremental placement (two_level_refresh without a
    re-cluster) on distinct texts, ids and numbers only: which theme and paraphrase group
    each text is in. What those groups look like (sizes, labels, medoids, similarities)
    is int_pattern_texts__described's, from the assignment (describe_texts_two_levels).
    `x` holds one vector per text in `texts`' order; `members` as in _place_texts."""
    # normalized for the placement as place_level does (x[first], then again inside
    # extend_labels)
    unit = normalize(np.asarray(x, dtype=np.float32))
    theme_labels, theme_ids = _place_texts(
        texts, unit, texts.old_theme, theme_threshold, "th_", members
    )
    group_labels, group_ids = _place_texts(
        texts, unit, texts.old_group, paraphrase_threshold, "pg_", members
    )
    numbers = numbers_for(group_ids[group_labels], texts.old_group, texts.old_number)
    return TextPlacement(theme_labels, theme_ids, group_labels, group_ids, numbers)


def labels_of_ids(ids_per_text: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(dense label per text, id per label) from an id per text, labels numbered by first
    appearance: how a stored assignment becomes the partition _describe_texts_level reads."""
    ids_per_text = np.asarray(ids_per_text).astype(str)
    first, labels = _distinct(ids_per_text)
    return labels, np.asarray(ids_per_text[first], dtype=object)


def describe_texts_two_levels(
    texts: DistinctTexts, x: np.ndarray, placement: TextPlacement
) -> object:
    """One row per distinct text (key = description_hash) with every column of the
    two-level clustering but pattern_id and placed_by: ids, cluster_id and what the text's
    theme and group look like. `x`: the texts' raw vectors in `texts`' order (raw, as
    describe_texts reads them, so the floats equal a full clustering's)."""
    import pyarrow as pa

    from engram.numeric.clustering import term_counts, two_level_columns

    # the texts are tokenized once for both levels
    counts = term_counts(texts.texts)
    theme = _describe_texts_level(texts, x, placement.theme_labels, placement.theme_ids, counts)
    group = _describe_texts_level(texts, x, placement.group_labels, placement.group_ids, counts)
    # typed: with no texts (an empty warehouse) an untyped empty list is Arrow's null type
    keys = pa.array(texts.keys.tolist(), type=pa.string())
    return two_level_columns(pa.table({"description_hash": keys}), theme, group, placement.numbers)


def two_level_refresh_texts(
    texts: DistinctTexts,
    x: np.ndarray,
    *,
    theme_threshold: float,
    paraphrase_threshold: float,
    members: Any,
) -> object:
    """place_texts_two_levels then describe_texts_two_levels: the placement and the
    description a refresh makes, in one table per distinct text (what tests compare with
    two_level_refresh over every row)."""
    placement = place_texts_two_levels(
        texts,
        x,
        theme_threshold=theme_threshold,
        paraphrase_threshold=paraphrase_threshold,
        members=members,
    )
    return describe_texts_two_levels(texts, x, placement)
