"""Threshold clustering of unit-length text embeddings that scales to millions of rows.

The target is average linkage (UPGMA) on cosine similarity cut at a threshold: two groups
merge while the mean similarity between their members is at least `threshold`, so a
paraphrase family (mutually similar texts) ends up together without single linkage's
chaining. Exact UPGMA needs all pairs, so it is run locally:

1. rows are split into leaves of at most `leaf_size` by recursive k-means on their
   direction (cheap: about log(n) k-means passes with <= 64 centroids each);
2. UPGMA runs inside each leaf;
3. the resulting clusters become weighted points (member sum vector, member count) and the
   split + merge repeats on them with fresh k-means seeds, so groups cut apart by a leaf
   boundary meet again, until a round no longer shrinks the cluster count (or everything
   fits into one leaf, where the last round is exact UPGMA over the clusters).

For unit vectors, the mean pairwise cosine between groups A and B is
sum(A)·sum(B) / (|A| |B|), so step 3 merges by the exact average-linkage criterion, not an
approximation of it. Everything is deterministic for a given input order and seed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

__all__ = [
    "DEFAULT_LEAF_SIZE",
    "ClusterLevel",
    "ClusterSummary",
    "KeyedRows",
    "TermCounts",
    "TextClusters",
    "average_linkage",
    "canonical_labels",
    "cluster_embeddings",
    "cluster_keyed",
    "cluster_level",
    "cluster_texts",
    "describe_level",
    "describe_texts",
    "distinctive_terms",
    "embedding_array",
    "embedding_matrix",
    "group_sums",
    "keyed_rows",
    "kmeans_assign",
    "normalize",
    "partition",
    "stable_ids",
    "summarize",
    "term_counts",
    "two_level_assignment",
    "two_level_columns",
    "two_level_table",
    "vectors_by_description",
    "vectors_in_order",
]

DEFAULT_LEAF_SIZE = 2000  # rows per UPGMA leaf: 2000^2 pair distances is ~30 ms of work
_MAX_BRANCH = 64  # k-means centroids per split; a 1M-row input needs two levels
_KMEANS_SAMPLE = 65_536  # rows a k-means split is fitted on
_KMEANS_ITERS = 15
_MIN_ROUND_GAIN = 0.01  # stop once a merge round removes fewer than 1% of the clusters
_MAX_ROUNDS = 12
_SUMMARY_CHUNK = 65_536


def normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32); all-zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def partition(x: np.ndarray, leaf_size: int = DEFAULT_LEAF_SIZE, seed: int = 0) -> list[np.ndarray]:
    """Split row indices into groups of at most `leaf_size` rows that lie close together.

    Recursive k-means with at most 64 centroids per split; a split that k-means cannot
    make (identical rows) falls back to equal chunks, so the recursion always ends.
    Groups come out in a deterministic order.
    """
    if leaf_size < 2:
        raise ValueError(f"leaf_size must be >= 2, got {leaf_size}")
    leaves: list[np.ndarray] = []
    stack = [np.arange(len(x))]
    depth_seed = seed
    while stack:
        idx = stack.pop()
        if len(idx) <= leaf_size:
            if len(idx):
                leaves.append(idx)
            continue
        k = min(_MAX_BRANCH, math.ceil(len(idx) / max(1, leaf_size // 2)))
        depth_seed += 1
        rows = x if len(idx) == len(x) else x[idx]  # no copy of the whole input
        assign = kmeans_assign(rows, k, depth_seed)
        parts = [idx[assign == c] for c in range(k)]
        parts = [p for p in parts if len(p)]
        if len(parts) <= 1:  # k-means could not split: identical points
            parts = [p for p in np.array_split(idx, k) if len(p)]
        stack.extend(reversed(parts))
    return leaves


def kmeans_assign(
    x: np.ndarray,
    k: int,
    seed: int,
    *,
    sample_rows: int = _KMEANS_SAMPLE,
    iterations: int = _KMEANS_ITERS,
) -> np.ndarray:
    """Spherical k-means (cosine): fitted on a seeded sample of at most `sample_rows` rows
    (plenty for the <= 64 centroids of a split; the vector index asks for more), then every
    row goes to its most similar centroid. Plain numpy matrix products; sklearn's k-means++
    init dominated the run time at 1M rows."""
    rng = np.random.default_rng(seed)
    n = len(x)
    picked = np.sort(rng.choice(n, sample_rows, replace=False)) if n > sample_rows else None
    sample = x if picked is None else x[picked]
    centroids = normalize(sample[rng.choice(len(sample), k, replace=False)])
    for _ in range(iterations):
        labels = _nearest_centroid(sample, centroids)
        sums = group_sums(sample, labels, k)
        empty = ~np.any(sums, axis=1)
        sums[empty] = centroids[empty]  # an empty centroid stays where it was
        updated = normalize(sums)
        if np.array_equal(updated, centroids):
            break
        centroids = updated
    return _nearest_centroid(x, centroids)


def _nearest_centroid(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    # rows per product bounded so that rows x centroids stays near 128M floats (512 MB)
    chunk = min(_SUMMARY_CHUNK, max(1024, (1 << 27) // max(1, len(centroids))))
    out = np.empty(len(x), dtype=np.int64)
    for lo in range(0, len(x), chunk):
        out[lo : lo + chunk] = np.argmax(x[lo : lo + chunk] @ centroids.T, axis=1)
    return out


def average_linkage(sums: np.ndarray, counts: np.ndarray, threshold: float) -> np.ndarray:
    """UPGMA on weighted unit-vector groups: merge while mean pairwise cosine >= threshold.

    `sums[i]` is the sum of group i's member vectors and `counts[i]` its member count;
    returns a label per group (0..k-1, by first appearance). With all counts 1 this is
    SciPy's average linkage on cosine distance cut at 1 - threshold.
    """
    m = len(counts)
    if m == 0:
        return np.zeros(0, dtype=np.int64)
    if m == 1:
        return np.zeros(1, dtype=np.int64)
    if np.all(counts == 1):
        rows = normalize(sums).astype(np.float64)
        # cosine distances by one matrix product (much faster than pdist at d = 384)
        distance = np.clip(1.0 - rows @ rows.T, 0.0, 2.0)
        np.fill_diagonal(distance, 0.0)
        tree = linkage(squareform(distance, checks=False), method="average")
        # fcluster keeps merges at distance <= t; a tiny slack absorbs rounding at exactly t
        flat = fcluster(tree, t=1.0 - threshold + 1e-12, criterion="distance")
        return _first_appearance(flat)
    return _first_appearance(_weighted_upgma(sums, counts, threshold))


def _weighted_upgma(sums: np.ndarray, counts: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy best-pair merging with per-row best tracking; O(m^2) memory, m <= leaf size."""
    s = np.asarray(sums, dtype=np.float64).copy()
    c = np.asarray(counts, dtype=np.float64).copy()
    m = len(c)
    sim = (s @ s.T) / np.outer(c, c)
    np.fill_diagonal(sim, -np.inf)
    alive = np.ones(m, dtype=bool)
    parent = np.arange(m)
    best = sim.argmax(axis=1)
    best_val = sim[np.arange(m), best]
    while True:
        i = int(best_val.argmax())
        if best_val[i] < threshold:
            break
        j = int(best[i])
        s[i] += s[j]
        c[i] += c[j]
        parent[j] = i
        alive[j] = False
        sim[j, :] = -np.inf
        sim[:, j] = -np.inf
        best_val[j] = -np.inf
        row = (s @ s[i]) / (c * c[i])
        row[~alive] = -np.inf
        row[i] = -np.inf
        sim[i, :] = row
        sim[:, i] = row
        best[i] = int(row.argmax())
        best_val[i] = row[best[i]]
        stale = alive & ((best == i) | (best == j))
        stale[i] = False
        if stale.any():
            rows = np.flatnonzero(stale)
            best[rows] = sim[rows].argmax(axis=1)
            best_val[rows] = sim[rows, best[rows]]
        better = alive & (row > best_val)
        best[better] = i
        best_val[better] = row[better]
    # resolve merge chains to their surviving root
    while True:
        grand = parent[parent]
        if np.array_equal(grand, parent):
            return parent
        parent = grand


def unique_strings(values: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`np.unique(values, return_index=True, return_inverse=True)` for string keys: the
    sorted distinct values (as str), each one's first row, and each row's index into them.

    By hashing (pandas.factorize) instead of sorting fixed-width unicode: np.unique over a
    1M-row column of 32-character ids took most of an incremental clustering's 16 s (ten
    calls), this takes a fraction of a second. The same answer: distinct values in code
    point order (Python's string order, as numpy's), first rows, inverse per row."""
    import pandas as pd

    objects = np.asarray(values, dtype=object)
    if len(objects) == 0:
        return np.zeros(0, dtype=str), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    codes, uniques = pd.factorize(objects, sort=True, use_na_sentinel=True)
    if (codes < 0).any():  # a missing value: no string order for it, let numpy decide
        unique, first, inverse = np.unique(
            objects.astype(str), return_index=True, return_inverse=True
        )
        return unique, first, inverse.reshape(-1)
    codes = np.asarray(codes, dtype=np.int64)
    order = np.argsort(codes, kind="stable")
    ordered = codes[order]
    first = order[np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])]
    return np.asarray(uniques, dtype=object).astype(str), first, codes


def _first_appearance(labels: np.ndarray) -> np.ndarray:
    """Renumber labels 0..k-1 in order of first appearance."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inverse.reshape(-1)]


canonical_labels = _first_appearance


def group_sums(x: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Per-label sums of rows (float32, so a 1M x 384 input is not copied to float64),
    via one sparse product instead of a per-row Python loop."""
    onehot = sp.csr_matrix(
        (np.ones(len(labels), dtype=np.float32), (labels, np.arange(len(labels)))),
        shape=(k, len(labels)),
    )
    return np.asarray(onehot @ np.asarray(x, dtype=np.float32))


def cluster_embeddings(
    x: np.ndarray,
    threshold: float,
    *,
    leaf_size: int = DEFAULT_LEAF_SIZE,
    seed: int = 0,
) -> np.ndarray:
    """Cluster label per row (0..k-1, numbered by first appearance); see the module doc.

    Rows should be unit length (they are normalized here); an all-zero row (no embedding)
    gets a singleton cluster of its own.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    x = normalize(x)
    n = len(x)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    valid = np.linalg.norm(x, axis=1) > 0
    labels = np.full(n, -1, dtype=np.int64)
    rows = np.flatnonzero(valid)
    if len(rows) == n:  # the usual case: no copy of a possibly huge matrix
        labels[:] = _cluster_valid(x, threshold, leaf_size, seed)
    elif len(rows):
        labels[rows] = _cluster_valid(x[rows], threshold, leaf_size, seed)
    missing = np.flatnonzero(~valid)
    labels[missing] = labels.max() + 1 + np.arange(len(missing))
    return _first_appearance(labels)


def _cluster_valid(x: np.ndarray, threshold: float, leaf_size: int, seed: int) -> np.ndarray:
    n = len(x)
    of_row = np.arange(n)  # row -> current cluster
    sums = x  # current cluster -> sum of its member vectors
    counts = np.ones(n, dtype=np.int64)
    for round_no in range(_MAX_ROUNDS):
        m = len(counts)
        single = m <= leaf_size
        directions = sums if round_no == 0 else normalize(sums)
        groups = [np.arange(m)] if single else partition(directions, leaf_size, seed + round_no)
        merged = np.empty(m, dtype=np.int64)
        next_id = 0
        for group in groups:
            local = average_linkage(sums[group], counts[group], threshold)
            merged[group] = local + next_id
            next_id += int(local.max()) + 1
        of_row = merged[of_row]
        sums = group_sums(sums, merged, next_id)
        counts = np.bincount(merged, weights=counts, minlength=next_id).astype(np.int64)
        if single or next_id > m * (1 - _MIN_ROUND_GAIN):
            break
    return of_row


@dataclass(frozen=True)
class ClusterSummary:
    """What the marts report per cluster and per row."""

    centroids: np.ndarray  # (k, d) float32, unit length: normalized mean of the members
    sizes: np.ndarray  # (k,) rows per cluster
    similarity: np.ndarray  # (n,) cosine of each row to its cluster's centroid
    central: np.ndarray  # (k,) row index of the member nearest the centroid (the label)


def summarize(x: np.ndarray, labels: np.ndarray) -> ClusterSummary:
    """Centroid, size, per-row similarity and most central member of each cluster.

    Ties for the most central member go to the earliest row, so labels are deterministic.
    """
    x = normalize(x)
    labels = np.asarray(labels, dtype=np.int64)
    k = int(labels.max()) + 1 if len(labels) else 0
    centroids = normalize(group_sums(x, labels, k)) if k else np.zeros((0, x.shape[1]))
    similarity = np.zeros(len(labels), dtype=np.float32)
    for lo in range(0, len(labels), _SUMMARY_CHUNK):  # bounded n x d temporaries
        hi = lo + _SUMMARY_CHUNK
        similarity[lo:hi] = np.einsum("ij,ij->i", x[lo:hi], centroids[labels[lo:hi]])
    similarity = np.clip(similarity, -1.0, 1.0)
    order = np.lexsort((np.arange(len(labels)), -similarity, labels))
    # no rows (an empty warehouse): no clusters; np.r_[True, ...] would invent one
    firsts = np.flatnonzero(np.r_[True, labels[order][1:] != labels[order][:-1]]) if k else []
    central = order[np.asarray(firsts, dtype=np.int64)]
    return ClusterSummary(
        centroids=centroids.astype(np.float32),
        sizes=np.bincount(labels, minlength=k),
        similarity=similarity,
        central=central,
    )


def cluster_keyed(
    keys: np.ndarray,
    x: np.ndarray | KeyedRows,
    threshold: float,
    *,
    leaf_size: int = DEFAULT_LEAF_SIZE,
    seed: int = 0,
) -> np.ndarray:
    """Cluster rows whose identical texts share a key (description or context hash).

    Each distinct key is clustered once (duplicates would only add weight and work), and
    every row inherits its key's cluster. Labels are numbered by first appearance in the
    given row order, so sorting rows by id first makes ids deterministic.
    """
    _, first, inverse = unique_strings(keys)
    unique_labels = cluster_embeddings(x[first], threshold, leaf_size=leaf_size, seed=seed)
    return _first_appearance(unique_labels[inverse.reshape(-1)])


@dataclass(frozen=True)
class TextClusters:
    """Per-row cluster facts for rows of texts that may repeat (same key, same text)."""

    labels: np.ndarray  # (n,) cluster per row, numbered by first appearance
    sizes: np.ndarray  # (n,) rows in the row's cluster
    label_text: np.ndarray  # (n,) text of the cluster's most central distinct text
    similarity: np.ndarray  # (n,) cosine of the row's vector to its cluster centroid
    centroids: np.ndarray  # (k, d) unit-length centroid of the cluster's distinct texts


def cluster_texts(
    keys: np.ndarray,
    texts: np.ndarray,
    x: np.ndarray,
    threshold: float,
    *,
    leaf_size: int = DEFAULT_LEAF_SIZE,
    seed: int = 0,
) -> TextClusters:
    """Cluster rows by meaning and describe the clusters, counting each distinct text once.

    Centroids, labels and similarities come from the distinct texts, so one text repeated
    by many rows does not drag its cluster's centroid or label.
    """
    keys = np.asarray(keys).astype(str)
    labels = cluster_keyed(keys, x, threshold, leaf_size=leaf_size, seed=seed)
    return describe_texts(keys, texts, x, labels)


def describe_texts(
    keys: np.ndarray, texts: np.ndarray, x: np.ndarray | KeyedRows, labels: np.ndarray
) -> TextClusters:
    """The TextClusters of a given partition (`labels` per row, 0..k-1, every label used):
    what cluster_texts reports, for clusters made elsewhere (an incremental placement,
    engram/numeric/incremental.py). The same partition gives the same facts, whatever
    made it or however its labels are numbered."""
    labels = np.asarray(labels, dtype=np.int64)
    _, first, inverse = unique_strings(keys)
    # distinct texts in order of first appearance, so ties (a two-member cluster's members
    # are equally central) go to the earliest row, not to the smallest hash
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    first, inverse = first[order], rank[inverse.reshape(-1)]
    unique_labels = labels[first]
    summary = summarize(x[first], unique_labels)
    label_text = np.asarray(texts, dtype=object)[first][summary.central]
    counts = np.bincount(labels, minlength=len(summary.central))
    return TextClusters(
        labels=labels,
        sizes=counts[labels],
        label_text=label_text[labels],
        similarity=summary.similarity[inverse],
        centroids=summary.centroids,
    )


def embedding_matrix(column: object, dim: int | None = None) -> np.ndarray:
    """A pyarrow FLOAT[d] (fixed-size list) column as an (n, d) float32 matrix.

    Missing embeddings become zero rows, which the clustering treats as singletons.
    """
    import pyarrow as pa

    values = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    width = dim or values.type.list_size
    out = np.zeros((len(values), width), dtype=np.float32)
    valid = np.asarray(values.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    if valid.any():
        out[valid] = values.filter(valid).flatten().to_numpy().reshape(-1, width)
    return out


def vectors_by_description(staged: object) -> object:
    """(description_hash, embedding) once per distinct description, ordered by hash: a
    DuckDB relation over `staged` (stg_patterns, or a filter of it). The embedding is
    null where the description has none.

    Each description's vector is read through one of its patterns (the smallest id), the
    pattern found on ids and hashes alone. Aggregating the vector column itself
    (`any_value(embedding)` grouped by hash) carried every pattern's copy through the
    aggregate: 9.3 s against 0.5 s at 1M patterns over 24k descriptions, once per build
    in each of int_patterns__clustered and pattern_similar_pairs (issue 18)."""
    firsts = staged.aggregate(  # type: ignore[attr-defined]
        "min(pattern_id) as pattern_id", "description_hash"
    ).set_alias("engram_first_of_description")
    return (
        staged.join(firsts, "pattern_id", how="semi")  # type: ignore[attr-defined]
        .project("description_hash, embedding")
        .order("description_hash")
    )


def vectors_in_order(staged: object, keys: np.ndarray, batch_rows: int = 50_000) -> np.ndarray:
    """One raw vector per description hash in `keys`, in that order (zeros where a
    description has none), streamed from vectors_by_description(staged) in batches of
    `batch_rows`: 1M distinct descriptions' FLOAT[384] are 1.5 GB as Arrow."""
    position = {key: i for i, key in enumerate(np.asarray(keys).tolist())}
    x: np.ndarray | None = None
    reader = vectors_by_description(staged).to_arrow_reader(batch_rows)  # type: ignore[attr-defined]
    for batch in reader:
        part = embedding_matrix(batch.column(1))
        if x is None:
            x = np.zeros((len(position), part.shape[1]), dtype=np.float32)
        at = np.fromiter(
            (position[k] for k in batch.column(0).to_pylist()), dtype=np.int64, count=len(part)
        )
        x[at] = part
    return x if x is not None else np.zeros((len(position), 0), dtype=np.float32)


class KeyedRows:
    """Row vectors held once per distinct text: row i's vector is `vectors[key_of_row[i]]`.

    The pattern clustering reads a row's vector only as `x[rows]` with one row per
    distinct text (cluster_keyed, describe_texts, place_level all take `x[first]`), so it
    can run on this in place of an (n, d) matrix. At 1M patterns over 25k descriptions
    that is 25k vectors in memory instead of 1M (1.5 GB, plus the same again as the Arrow
    column it came from): the difference between the build's peak RSS fitting in 6 GiB or
    not (issue 18)."""

    def __init__(self, vectors: np.ndarray, key_of_row: np.ndarray) -> None:
        self.vectors = vectors
        self.key_of_row = np.asarray(key_of_row, dtype=np.int64).reshape(-1)

    def __len__(self) -> int:
        return len(self.key_of_row)

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        return self.vectors[self.key_of_row[rows]]


def keyed_rows(row_keys: object, batches: Iterable[object], key: str) -> KeyedRows:
    """KeyedRows from the rows' text keys and a stream of record batches holding one row
    per distinct key (`key`, `embedding`) in sorted key order, e.g.
    `vectors_by_description(staged).to_arrow_reader(n)`. The matrix is
    filled batch by batch, so no whole Arrow copy of the vectors is held beside it."""
    import pyarrow as pa

    keys = row_keys.combine_chunks() if isinstance(row_keys, pa.ChunkedArray) else row_keys
    unique_keys, _, key_of_row = unique_strings(keys.to_pylist())  # type: ignore[attr-defined]
    vectors: np.ndarray | None = None
    at = 0
    for batch in batches:
        names = batch.schema.names  # type: ignore[attr-defined]
        got = np.asarray(batch.column(names.index(key)).to_pylist(), dtype=str)  # type: ignore[attr-defined]
        if not np.array_equal(got, unique_keys[at : at + len(got)]):
            raise ValueError(f"keyed_rows: the vectors' {key} values disagree with the rows'")
        part = embedding_matrix(batch.column(names.index("embedding")))  # type: ignore[attr-defined]
        if vectors is None:
            vectors = np.zeros((len(unique_keys), part.shape[1]), dtype=np.float32)
        vectors[at : at + len(got)] = part
        at += len(got)
    if at != len(unique_keys):
        raise ValueError(f"keyed_rows: {at} vectors for {len(unique_keys)} distinct {key} values")
    if vectors is None:  # no rows at all
        vectors = np.zeros((0, 0), dtype=np.float32)
    return KeyedRows(vectors, key_of_row)


def embedding_array(matrix: np.ndarray, missing: np.ndarray | None = None) -> object:
    """An (n, d) matrix as a pyarrow FLOAT[d] column (DuckDB FLOAT[d]); `missing` rows null."""
    import pyarrow as pa

    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    mask = None if missing is None else pa.array(np.asarray(missing, dtype=bool))
    return pa.FixedSizeListArray.from_arrays(
        pa.array(matrix.reshape(-1)), matrix.shape[1], mask=mask
    )


def clustered_table(
    table: object,
    *,
    group_key: str,
    text: str,
    keep: tuple[str, ...],
    threshold: float,
    names: dict[str, str],
    labels: np.ndarray | None = None,
) -> object:
    """What the clustered dbt Python models return: `keep` columns of `table` (a pyarrow
    table with `group_key`, `text` and `embedding`), then the cluster columns under the
    model's own names, in the order of `names` ({cluster_id | cluster_size |
    cluster_label | similarity_to_centroid: output name}).

    Rows sharing `group_key` (identical texts) are clustered once. With `labels` (a
    cluster id per row, from an incremental placement) nothing is clustered: the given
    partition is described and the given ids are kept."""
    import pyarrow as pa

    keys = np.asarray(table.column(group_key).to_pylist(), dtype=object)  # type: ignore[attr-defined]
    texts = np.asarray(table.column(text).to_pylist(), dtype=object)  # type: ignore[attr-defined]
    x = embedding_matrix(table.column("embedding"))  # type: ignore[attr-defined]
    if labels is None:
        clusters = cluster_texts(keys, texts, x, threshold)
        ids = clusters.labels
    else:
        ids = np.asarray(labels, dtype=np.int64)
        clusters = describe_texts(keys, texts, x, _first_appearance(ids))
    computed = {
        "cluster_id": pa.array(ids, type=pa.int64()),
        "cluster_size": pa.array(clusters.sizes, type=pa.int64()),
        "cluster_label": pa.array(clusters.label_text, type=pa.string()),
        "similarity_to_centroid": pa.array(clusters.similarity, type=pa.float64()),
    }
    columns = {name: table.column(name) for name in keep}  # type: ignore[attr-defined]
    columns.update({out: computed[generic] for generic, out in names.items()})
    return pa.table(columns)


# --------------------------------------------------------------------------- two levels


_TOKEN = re.compile(r"[a-z][a-z0-9_]{2,}")
# words that say nothing about what an approach does; everything else may be distinctive
_STOPWORDS = frozenset(
    [
        "the",
        "and",
        "for",
        "with",
        "from",
        "into",
        "that",
        "this",
        "then",
        "than",
        "when",
        "where",
        "which",
        "while",
        "what",
        "are",
        "was",
        "were",
        "been",
        "being",
        "has",
        "have",
        "had",
        "not",
        "but",
        "all",
        "any",
        "its",
        "their",
        "there",
        "them",
        "they",
        "you",
        "your",
        "our",
        "out",
        "off",
        "via",
        "per",
        "use",
        "used",
        "using",
        "can",
        "will",
        "would",
        "should",
        "could",
        "may",
        "one",
        "two",
        "new",
        "old",
    ]
)


def stable_ids(labels: np.ndarray, keys: np.ndarray, prefix: str) -> np.ndarray:
    """An id per cluster that depends on its membership only: `prefix` + the first 12 hex
    digits of sha256 over the sorted member keys. A rebuild that leaves a cluster's
    members as they were gives it the same id, whatever else changed around it (a
    positional number would shift as soon as one earlier cluster split)."""
    import hashlib

    labels = np.asarray(labels, dtype=np.int64)
    keys = np.asarray(keys).astype(str)
    k = int(labels.max()) + 1 if len(labels) else 0
    order = np.lexsort((keys, labels))
    bounds = np.searchsorted(labels[order], np.arange(k + 1))
    out = np.empty(k, dtype=object)
    for c in range(k):
        members = keys[order[bounds[c] : bounds[c + 1]]]
        digest = hashlib.sha256("\n".join(members.tolist()).encode()).hexdigest()
        out[c] = f"{prefix}{digest[:12]}"
    return out


@dataclass(frozen=True)
class TermCounts:
    """Word counts of some texts (distinctive_terms' input): the tokenizing is most of
    its cost, and the two levels of the pattern clustering describe the same texts."""

    doc_term: object  # scipy.sparse csr (n_texts, n_words): how often each word occurs
    names: np.ndarray  # (n_words,) the words


def term_counts(texts: np.ndarray) -> TermCounts:
    """Lower-cased words of three or more letters, stopwords left out, counted per text."""
    vocabulary: dict[str, int] = {}
    rows: list[int] = []
    cols: list[int] = []
    texts = np.asarray(texts, dtype=object)
    for i, text in enumerate(texts.tolist()):
        for word in _TOKEN.findall(str(text).lower()):
            if word in _STOPWORDS:
                continue
            rows.append(i)
            cols.append(vocabulary.setdefault(word, len(vocabulary)))
    doc_term = sp.csr_matrix(
        (
            np.ones(len(rows), dtype=np.float64),
            (np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)),
        ),
        shape=(len(texts), len(vocabulary)),
    )
    names = np.empty(len(vocabulary), dtype=object)
    for word, j in vocabulary.items():
        names[j] = word
    return TermCounts(doc_term, names)


def distinctive_terms(
    texts: np.ndarray, labels: np.ndarray, top: int = 3, *, counts: TermCounts | None = None
) -> list[list[str]]:
    """The `top` most distinctive words of each cluster, c-TF-IDF style (BERTopic's
    class-based TF-IDF): a cluster's texts form one document; a word scores
    tf(word, cluster) / words(cluster) * log(1 + mean words per cluster / tf(word, all)),
    so a word frequent in the cluster and rare elsewhere wins. Why: the most central
    description alone reads like one member ("Revert an earlier change in the project
    configuration.") even when the cluster also holds fixes to src and docs; the terms
    say what the members share. Ties go to the alphabetically first word. `counts`:
    term_counts(texts), when the caller has it already."""
    labels = np.asarray(labels, dtype=np.int64)
    k = int(labels.max()) + 1 if len(labels) else 0
    if counts is None:
        counts = term_counts(texts)
    names = counts.names
    if not len(names) or k == 0:  # no text has a word, or no cluster
        return [[] for _ in range(k)]
    doc_term = counts.doc_term
    onehot = sp.csr_matrix(
        (np.ones(len(labels)), (labels, np.arange(len(labels)))), shape=(k, len(labels))
    )
    class_term = (onehot @ doc_term).tocsr()
    words_per_class = np.asarray(class_term.sum(axis=1)).ravel()
    term_total = np.asarray(class_term.sum(axis=0)).ravel()
    idf = np.log1p(max(words_per_class.mean(), 1.0) / term_total)
    result: list[list[str]] = []
    for c in range(k):
        lo, hi = class_term.indptr[c], class_term.indptr[c + 1]
        if lo == hi:
            result.append([])
            continue
        cols_c = class_term.indices[lo:hi]
        score = class_term.data[lo:hi] / words_per_class[c] * idf[cols_c]
        order = np.lexsort((names[cols_c].astype(str), -score))[:top]
        result.append([str(names[cols_c[j]]) for j in order])
    return result


@dataclass(frozen=True)
class ClusterLevel:
    """One level of the pattern clustering, per row (pattern)."""

    number: np.ndarray  # (n,) cluster 0..k-1, numbered by first appearance
    ids: np.ndarray  # (n,) stable id (prefix + hash of the sorted member keys)
    sizes: np.ndarray  # (n,) rows in the row's cluster
    central_key: np.ndarray  # (n,) key of the cluster's most central distinct text
    central_text: np.ndarray  # (n,) that text
    terms: np.ndarray  # (n,) the cluster's distinctive terms, comma-separated
    label: np.ndarray  # (n,) central text + " [terms]"
    similarity: np.ndarray  # (n,) cosine of the row's vector to its cluster centroid


def cluster_level(
    row_keys: np.ndarray,
    group_keys: np.ndarray,
    texts: np.ndarray,
    x: np.ndarray | KeyedRows,
    threshold: float,
    prefix: str,
    *,
    leaf_size: int = DEFAULT_LEAF_SIZE,
    seed: int = 0,
) -> ClusterLevel:
    """Cluster rows at one cut and describe each cluster: a stable id from its member
    `row_keys`, its size, its most central distinct text (the medoid, ties to the first
    row) and that text's cluster's c-TF-IDF terms."""
    group_keys = np.asarray(group_keys).astype(str)
    labels = cluster_keyed(group_keys, x, threshold, leaf_size=leaf_size, seed=seed)
    ids = stable_ids(labels, np.asarray(row_keys).astype(str), prefix)
    return describe_level(row_keys, group_keys, texts, x, labels, ids)


def describe_level(
    row_keys: np.ndarray,
    group_keys: np.ndarray,
    texts: np.ndarray,
    x: np.ndarray | KeyedRows,
    labels: np.ndarray,
    ids: np.ndarray,
) -> ClusterLevel:
    """The ClusterLevel of a given partition: `labels` per row (0..k-1, every label used)
    and `ids` per label. Split from cluster_level so that an incremental placement
    (engram/numeric/incremental.py) describes its clusters exactly as a full clustering
    would describe the same partition."""
    row_keys = np.asarray(row_keys).astype(str)
    group_keys = np.asarray(group_keys).astype(str)
    texts = np.asarray(texts, dtype=object)
    labels = np.asarray(labels, dtype=np.int64)
    ids = np.asarray(ids, dtype=object)
    clusters = describe_texts(group_keys, texts, x, labels)
    k = int(labels.max()) + 1 if len(labels) else 0
    # the central text's first row gives the medoid's key
    central_text_of = np.empty(k, dtype=object)
    central_text_of[labels] = clusters.label_text
    central_rows = np.flatnonzero(texts == central_text_of[labels])
    # rows are in order, so a label's first central row is its first occurrence here
    _, first_central = np.unique(labels[central_rows], return_index=True)
    central_key = np.asarray(row_keys[central_rows[first_central]], dtype=object)
    _, first, _ = unique_strings(group_keys)
    terms_of = distinctive_terms(texts[first], labels[first])
    joined = np.array([", ".join(t) for t in terms_of], dtype=object)
    label_of = np.array(
        [
            f"{central_text_of[c]} [{joined[c]}]" if joined[c] else central_text_of[c]
            for c in range(k)
        ],
        dtype=object,
    )
    return ClusterLevel(
        number=labels,
        ids=ids[labels],
        sizes=clusters.sizes,
        central_key=central_key[labels],
        central_text=clusters.label_text,
        terms=joined[labels],
        label=label_of[labels],
        similarity=clusters.similarity,
    )


def check_thresholds(theme_threshold: float, paraphrase_threshold: float) -> None:
    """The theme is the coarser cut (a lower cosine threshold) than the paraphrase group;
    thresholds the other way round are a configuration error, said before any work."""
    if not 0.0 < theme_threshold <= paraphrase_threshold <= 1.0:
        raise ValueError(
            "need 0 < theme threshold <= paraphrase threshold <= 1, got "
            f"{theme_threshold} and {paraphrase_threshold}"
        )


def two_level_table(
    table: object,
    *,
    theme_threshold: float,
    paraphrase_threshold: float,
    x: np.ndarray | KeyedRows | None = None,
) -> object:
    """What int_patterns__clustered returns: per pattern (a pyarrow table with pattern_id,
    description_hash, description, embedding) its paraphrase group (the finer cut: one
    approach in other words) and its theme (a coarser cut: one kind of problem).

    The paraphrase level also fills the older cluster_* columns (cluster_id numbered by
    first appearance, cluster_label the central description, similarity_to_centroid),
    which other code reads: they were this same cut before themes existed.

    `x`: the rows' vectors (KeyedRows: one per distinct description) when the table has
    no `embedding` column."""

    check_thresholds(theme_threshold, paraphrase_threshold)
    keys = np.asarray(table.column("pattern_id").to_pylist(), dtype=object)  # type: ignore[attr-defined]
    hashes = np.asarray(table.column("description_hash").to_pylist(), dtype=object)  # type: ignore[attr-defined]
    texts = np.asarray(table.column("description").to_pylist(), dtype=object)  # type: ignore[attr-defined]
    if x is None:
        x = embedding_matrix(table.column("embedding"))  # type: ignore[attr-defined]
    theme = cluster_level(keys, hashes, texts, x, theme_threshold, "th_")
    group = cluster_level(keys, hashes, texts, x, paraphrase_threshold, "pg_")
    return two_level_columns(table, theme, group, group.number)


def two_level_assignment(
    table: object,
    *,
    theme_threshold: float,
    paraphrase_threshold: float,
    x: np.ndarray | KeyedRows,
) -> object:
    """int_patterns__clustered after a full clustering: per pattern (pattern_id,
    description_hash; rows in pattern_id order) its cluster_id (the paraphrase group
    numbered by first appearance), theme_id and paraphrase_group_id, the same partition
    and ids as two_level_table, without describing the groups: what they look like is
    int_pattern_texts__described's, computed once per distinct description."""
    import pyarrow as pa

    check_thresholds(theme_threshold, paraphrase_threshold)
    keys = np.asarray(table.column("pattern_id").to_pylist(), dtype=object)  # type: ignore[attr-defined]
    hashes = np.asarray(table.column("description_hash").to_pylist(), dtype=object).astype(str)  # type: ignore[attr-defined]
    row_keys = keys.astype(str)
    theme = cluster_keyed(hashes, x, theme_threshold)
    group = cluster_keyed(hashes, x, paraphrase_threshold)
    theme_ids = stable_ids(theme, row_keys, "th_")
    group_ids = stable_ids(group, row_keys, "pg_")
    return pa.table(
        {
            "pattern_id": table.column("pattern_id"),  # type: ignore[attr-defined]
            "description_hash": table.column("description_hash"),  # type: ignore[attr-defined]
            "cluster_id": pa.array(group, type=pa.int64()),
            "theme_id": pa.array(theme_ids[theme].tolist(), type=pa.string()),
            "paraphrase_group_id": pa.array(group_ids[group].tolist(), type=pa.string()),
        }
    )


def two_level_columns(
    table: object, theme: ClusterLevel, group: ClusterLevel, cluster_id: np.ndarray
) -> object:
    """int_patterns__clustered's columns from the two described levels; `cluster_id` per
    row (first-appearance numbers after a full clustering, kept numbers after an
    incremental one). A `table` without pattern_id (one row per distinct description, the
    incremental refresh's) gives the same columns without it."""
    import pyarrow as pa

    def text(values: np.ndarray) -> object:
        return pa.array(values.tolist(), type=pa.string())

    def whole(values: np.ndarray) -> object:
        return pa.array(values, type=pa.int64())

    def real(values: np.ndarray) -> object:
        return pa.array(values, type=pa.float64())

    names = table.column_names  # type: ignore[attr-defined]
    keys = {
        column: table.column(column)  # type: ignore[attr-defined]
        for column in ("pattern_id", "description_hash")
        if column in names
    }
    return pa.table(
        {
            **keys,
            "cluster_id": whole(cluster_id),
            "cluster_size": whole(group.sizes),
            "cluster_label": text(group.central_text),
            "similarity_to_centroid": real(group.similarity),
            "theme_id": text(theme.ids),
            "theme_size": whole(theme.sizes),
            "theme_label": text(theme.label),
            "theme_terms": text(theme.terms),
            "theme_medoid_pattern_id": text(theme.central_key),
            "paraphrase_group_id": text(group.ids),
            "paraphrase_group_size": whole(group.sizes),
            "paraphrase_group_label": text(group.label),
            "paraphrase_group_medoid_pattern_id": text(group.central_key),
            "similarity_to_theme_centroid": real(theme.similarity),
        }
    )
