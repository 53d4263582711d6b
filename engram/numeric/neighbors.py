"""Each row's nearest neighbours by cosine similarity, without an all-pairs table.

Up to `EXACT_MAX_ROWS` rows the answer is exact: blocked matrix products (a block of rows
against all rows, then argpartition), O(n^2 d) flops but no n x n matrix in memory. Above
that the quadratic cost dominates (1M rows would be ~8e14 flops), so an inverted-file
search answers instead: the rows are split into k-means leaves of ~1,000 (the same
partition the clustering uses) and each leaf is compared, by one matrix product, with
itself and its `n_probe - 1` most similar leaves. That is O(n * n_probe * leaf * d) flops,
all in BLAS; it can miss a neighbour that lies in a leaf not probed, so its recall is
measured against the exact answer (tests, README). On the 2-core target it was several
times faster than a usearch HNSW index at equal recall (README); `method="hnsw"` keeps that
path for comparison. When only neighbours above `min_similarity` are wanted (the marts'
case), rows without any are skipped before the top-k selection, which is most of its cost.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import numpy as np

from engram.numeric.clustering import group_sums, normalize, partition

__all__ = [
    "EXACT_MAX_ROWS",
    "KeyLists",
    "LeafIndex",
    "Neighbors",
    "key_lists",
    "leaf_index",
    "nearest_neighbors",
    "neighbors_of",
]

EXACT_MAX_ROWS = 20_000  # exact costs 2 n^2 d flops: ~0.3 TFLOP (seconds) at 20k
IVF_LEAF_SIZE = 1_000
IVF_PROBES = 4
_BLOCK_FLOATS = 1 << 25  # similarity block of at most 32M float32 (128 MB)

Method = Literal["auto", "exact", "ivf", "hnsw"]


@dataclass(frozen=True)
class Neighbors:
    """Row i's neighbours are index[i, :] (best first) with similarity[i, :]; -1 / -inf pad."""

    index: np.ndarray  # (n, k) int64
    similarity: np.ndarray  # (n, k) float32


def nearest_neighbors(
    x: np.ndarray,
    k: int,
    *,
    min_similarity: float | None = None,
    method: Method = "auto",
    exact_max_rows: int = EXACT_MAX_ROWS,
    n_probe: int = IVF_PROBES,
    seed: int = 0,
) -> Neighbors:
    """The k most similar other rows of each row (cosine), best first.

    With `min_similarity`, neighbours below it are left out (padded). `auto` is exact up
    to `exact_max_rows` rows and the inverted-file search above.
    """
    x = normalize(x)
    n = len(x)
    k = max(0, min(k, n - 1))
    floor = -np.inf if min_similarity is None else float(min_similarity)
    if k == 0:
        return Neighbors(np.zeros((n, 0), np.int64), np.zeros((n, 0), np.float32))
    if method == "auto":
        method = "exact" if n <= exact_max_rows else "ivf"
    if method == "exact":
        return _exact(x, k, floor)
    if method == "ivf":
        return _ivf(x, k, floor, n_probe, seed)
    if method == "hnsw":
        return _hnsw(x, k, floor)
    raise ValueError(f"unknown method {method!r}")


def neighbors_of(
    x: np.ndarray,
    rows: np.ndarray,
    k: int,
    *,
    min_similarity: float,
    near_floor: np.ndarray | None = None,
    exact_max_rows: int = EXACT_MAX_ROWS,
    n_probe: int = IVF_PROBES,
    seed: int = 0,
    leaves: LeafIndex | None = None,
) -> tuple[Neighbors, np.ndarray]:
    """Neighbours of some rows only, for an incremental refresh: the k most similar other
    rows (of all of `x`) with cosine >= `min_similarity` for each of `rows`, plus a mask
    over all rows of those within `min_similarity` of any of `rows` (whose own lists may
    now hold one of them). Work is O(len(rows) * n * d) up to `exact_max_rows` rows (exact,
    the same answer nearest_neighbors gives) and, above, the inverted-file search restricted
    to these rows' probes (approximate, as the full search is there).

    `near_floor` (per row of x) raises the bar for the mask: a row whose list is full and
    whose k-th similarity is s can only take a new neighbour at >= s, so only rows within
    their own floor count as near. `leaves`, leaf_index(x, seed) computed once, spares a
    caller that searches the same `x` twice (a refresh of similar pairs) building the
    partition twice."""
    x = normalize(x)
    n = len(x)
    bar = np.full(n, float(min_similarity), dtype=np.float32)
    if near_floor is not None:
        bar = np.maximum(bar, np.asarray(near_floor, dtype=np.float32))
    rows = np.asarray(rows, dtype=np.int64)
    k = max(0, min(k, n - 1))
    floor = float(min_similarity)
    out = _empty(len(rows), k)
    near = np.zeros(n, dtype=bool)
    if k == 0 or len(rows) == 0:
        return out, near
    local = np.arange(len(rows))
    if n <= exact_max_rows:
        everyone = np.arange(n)
        block = max(1, min(2048, _BLOCK_FLOATS // n))
        for lo in range(0, len(rows), block):
            part = rows[lo : lo + block]
            sims = x[part] @ x.T
            sims[np.arange(len(part)), part] = -np.inf  # not your own neighbour
            near |= (sims >= bar[None, :]).any(axis=0)
            _top_k(sims, k, floor, out, local[lo : lo + block], everyone)
        return out, near
    if leaves is None:
        leaves = leaf_index(x, seed)
    elif len(leaves.leaf_of) != n:
        raise ValueError(f"leaves are for {len(leaves.leaf_of)} rows, x has {n}")
    centroids = leaves.centroids
    n_probe = max(1, min(n_probe, len(leaves.members)))
    probes = np.argpartition(-(x[rows] @ centroids.T), n_probe - 1, axis=1)[:, :n_probe]
    prober = np.repeat(local, n_probe)[np.argsort(probes.ravel(), kind="stable")]
    bounds = np.concatenate(
        ([0], np.cumsum(np.bincount(probes.ravel(), minlength=len(leaves.members))))
    )
    for number, members in enumerate(leaves.members):
        queries = prober[bounds[number] : bounds[number + 1]]
        if len(queries) == 0:
            continue
        sims = x[rows[queries]] @ x[members].T
        sims[rows[queries][:, None] == members[None, :]] = -np.inf
        near[members[(sims >= bar[members][None, :]).any(axis=0)]] = True
        _merge_top_k(out, queries, sims, members, k, floor)
    order = np.lexsort((out.index, -out.similarity), axis=1)
    return (
        Neighbors(
            np.take_along_axis(out.index, order, axis=1),
            np.take_along_axis(out.similarity, order, axis=1),
        ),
        near,
    )


def _empty(n: int, k: int) -> Neighbors:
    return Neighbors(np.full((n, k), -1, np.int64), np.full((n, k), -np.inf, np.float32))


def _top_k(
    sims: np.ndarray, k: int, floor: float, out: Neighbors, rows: np.ndarray, columns: np.ndarray
) -> None:
    """Write each row's k best columns with similarity >= floor into `out` at `rows`.

    `columns` maps a column of `sims` to its row id; ties go to the smaller id.
    """
    if np.isfinite(floor):
        keep = np.flatnonzero((sims >= floor).any(axis=1))
        if len(keep) == 0:
            return
        sims, rows = sims[keep], rows[keep]
    take = min(k, sims.shape[1])
    top = np.argpartition(-sims, take - 1, axis=1)[:, :take]
    top_sims = np.take_along_axis(sims, top, axis=1)
    ids = columns[top]
    order = np.lexsort((ids, -top_sims), axis=1)
    ids = np.take_along_axis(ids, order, axis=1)
    top_sims = np.take_along_axis(top_sims, order, axis=1)
    valid = top_sims >= floor
    out.index[rows, :take] = np.where(valid, ids, -1)
    out.similarity[rows, :take] = np.where(valid, top_sims, -np.inf)


def _exact(x: np.ndarray, k: int, floor: float) -> Neighbors:
    n = len(x)
    out = _empty(n, k)
    block = max(1, min(2048, _BLOCK_FLOATS // n))
    everyone = np.arange(n)
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        sims = x[lo:hi] @ x.T
        sims[np.arange(hi - lo), np.arange(lo, hi)] = -np.inf  # not your own neighbour
        _top_k(sims, k, floor, out, everyone[lo:hi], everyone)
    return out


@dataclass(frozen=True)
class LeafIndex:
    """The inverted file's leaves (row indices per leaf), each row's leaf, and the leaves'
    unit centroids."""

    members: list[np.ndarray]
    leaf_of: np.ndarray
    centroids: np.ndarray


def leaf_index(x: np.ndarray, seed: int = 0) -> LeafIndex:
    """The inverted file over the unit rows x: one partition shared by the full search and
    the incremental one, so both probe alike (pass normalize(x) of the x they are given)."""
    leaves = partition(x, IVF_LEAF_SIZE, seed)
    leaf_of = np.empty(len(x), dtype=np.int64)
    for number, leaf in enumerate(leaves):
        leaf_of[leaf] = number
    return LeafIndex(leaves, leaf_of, normalize(group_sums(x, leaf_of, len(leaves))))


def _ivf(x: np.ndarray, k: int, floor: float, n_probe: int, seed: int) -> Neighbors:
    """Inverted file: each row is compared with the members of its n_probe nearest leaves
    (by leaf centroid); the work is done leaf by leaf, one matrix product per leaf against
    all rows probing it, and merged into each row's running top k."""
    n = len(x)
    index = leaf_index(x, seed)
    leaves, leaf_of, centroids = index.members, index.leaf_of, index.centroids
    n_probe = max(1, min(n_probe, len(leaves)))
    probes = np.empty((n, n_probe), dtype=np.int64)
    for lo in range(0, n, 65_536):
        sims = x[lo : lo + 65_536] @ centroids.T
        probes[lo : lo + 65_536] = np.argpartition(-sims, n_probe - 1, axis=1)[:, :n_probe]
    # invert the probe lists: which rows probe each leaf
    prober = np.repeat(np.arange(n), n_probe)[np.argsort(probes.ravel(), kind="stable")]
    bounds = np.concatenate(([0], np.cumsum(np.bincount(probes.ravel(), minlength=len(leaves)))))
    best = _empty(n, k)
    for number, members in enumerate(leaves):
        queries = prober[bounds[number] : bounds[number + 1]]
        if len(queries) == 0:
            continue
        sims = x[queries] @ x[members].T
        own = np.flatnonzero(leaf_of[queries] == number)  # not your own neighbour
        # leaves are ascending row ids (partition keeps order), so searchsorted finds a row
        sims[own, np.searchsorted(members, queries[own])] = -np.inf
        _merge_top_k(best, queries, sims, members, k, floor)
    # final order: best first, ties by row id
    order = np.lexsort((best.index, -best.similarity), axis=1)
    return Neighbors(
        np.take_along_axis(best.index, order, axis=1),
        np.take_along_axis(best.similarity, order, axis=1),
    )


def _merge_top_k(
    best: Neighbors,
    rows: np.ndarray,
    sims: np.ndarray,
    columns: np.ndarray,
    k: int,
    floor: float,
) -> None:
    """Fold new candidates (sims: rows x columns) into the rows' running top k."""
    if np.isfinite(floor):
        keep = np.flatnonzero((sims >= floor).any(axis=1))
        if len(keep) == 0:
            return
        rows, sims = rows[keep], sims[keep]
    all_sims = np.concatenate([best.similarity[rows], sims.astype(np.float32)], axis=1)
    all_ids = np.concatenate(
        [best.index[rows], np.broadcast_to(columns, (len(rows), len(columns)))], axis=1
    )
    top = np.argpartition(-all_sims, k - 1, axis=1)[:, :k]
    top_sims = np.take_along_axis(all_sims, top, axis=1)
    valid = top_sims >= floor
    best.index[rows] = np.where(valid, np.take_along_axis(all_ids, top, axis=1), -1)
    best.similarity[rows] = np.where(valid, top_sims, -np.inf)


def _hnsw(x: np.ndarray, k: int, floor: float) -> Neighbors:
    from usearch.index import Index

    n = len(x)
    threads = os.cpu_count() or 1
    index = Index(ndim=x.shape[1], metric="cos", dtype="f16", connectivity=16, expansion_add=64)
    index.expansion_search = max(40, 4 * k)
    index.add(np.arange(n, dtype=np.uint64), x, threads=threads)
    found = index.search(x, k + 1, threads=threads)
    got = np.asarray(found.keys, dtype=np.int64)
    sims = 1.0 - np.asarray(found.distances, dtype=np.float32)
    valid = np.arange(k + 1)[None, :] < np.asarray(found.counts)[:, None]
    valid &= got != np.arange(n)[:, None]  # drop the row itself wherever it appears
    valid &= sims >= floor
    rank = np.cumsum(valid, axis=1) - 1  # keep the first k valid hits, best first
    keep = valid & (rank < k)
    rows, cols = np.nonzero(keep)
    out = _empty(n, k)
    out.index[rows, rank[rows, cols]] = got[rows, cols]
    out.similarity[rows, rank[rows, cols]] = sims[rows, cols]
    return out


@dataclass(frozen=True)
class KeyLists:
    """Per key (distinct vector), the first k + 1 rows nearest to it, best first: its own
    rows (similarity 1.0) in row order, then the rows of its neighbouring keys, each key's
    in row order. Flat arrays grouped by `owner` in list order; `position` is 0-based.
    A row's own list is its key's minus itself, first k, which is why a key keeps k + 1:
    pattern_similar_pairs takes it so, per pattern, at read time
    (macros/pattern_similar_pairs_rows.sql)."""

    owner: np.ndarray  # the key whose list this is
    position: np.ndarray  # 0.. within the owner's list
    member: np.ndarray  # the listed row
    similarity: np.ndarray  # float32, the two keys' cosine (1.0 within a key)
    same_key: np.ndarray  # bool: the member is one of the owner's own rows


def key_lists(
    key_of_row: np.ndarray, neighbors: Neighbors, k: int, keys: np.ndarray | None = None
) -> KeyLists:
    """Each key's list of its k + 1 nearest rows (KeyLists). `neighbors` is over the
    distinct keys (key_of_row indexes into it); with `keys` (a boolean mask over the keys)
    only those keys' lists are made: a refresh that recomputed some keys' neighbours."""
    key_of_row = np.asarray(key_of_row, dtype=np.int64)
    n_keys = len(neighbors.index)
    by_key = np.argsort(key_of_row, kind="stable")
    count = np.bincount(key_of_row, minlength=n_keys)
    start = np.concatenate(([0], np.cumsum(count)[:-1]))
    want = k + 1  # a row drops itself from its key's list, so each key keeps k + 1 rows

    # candidate keys per key: itself (similarity 1) then its neighbours, best first
    cand = np.concatenate([np.arange(n_keys)[:, None], neighbors.index], axis=1)
    cand_sim = np.concatenate(
        [np.ones((n_keys, 1), np.float32), neighbors.similarity.astype(np.float32)], axis=1
    )
    ok = cand >= 0
    if keys is not None:
        ok &= np.asarray(keys, dtype=bool)[:, None]
    owner = np.repeat(np.arange(n_keys), ok.sum(axis=1))
    cand, cand_sim = cand[ok], cand_sim[ok]
    # expand each (key, candidate key) into up to `want` rows of the candidate key
    take = np.minimum(count[cand], want)
    pair = np.repeat(np.arange(len(cand)), take)
    offset = np.arange(len(pair)) - np.repeat(np.cumsum(take) - take, take)
    member = by_key[start[cand[pair]] + offset]
    member_owner = owner[pair]
    member_sim = cand_sim[pair]
    same_key = cand[pair] == member_owner
    # first `want` members per owning key (the arrays are grouped by owner, best first)
    per_owner = np.bincount(member_owner, minlength=n_keys)
    owner_start = np.concatenate(([0], np.cumsum(per_owner)[:-1]))
    position = np.arange(len(member)) - owner_start[member_owner]
    keep = position < want
    return KeyLists(
        owner=member_owner[keep],
        position=position[keep],
        member=member[keep],
        similarity=member_sim[keep],
        same_key=same_key[keep],
    )
