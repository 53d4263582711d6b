"""Vector search over pattern and context embeddings: an inverted-file (IVF) index beside
exact search, both plain numpy over one memory-mapped float32 matrix.

The index lives in plain files next to the serving copy, never inside a DuckDB file: HNSW
persisted in DuckDB (duckdb-vss) has open crash and WAL-replay bugs that can leave the
warehouse unopenable. Per index NAME a folder holds:

    NAME.vectors.npy   float32 unit vectors, rows grouped leaf by leaf, memory-mapped
    NAME.ids.npy       row number -> id (pattern_id or context_hash), same row order
    NAME.ivf.npz       leaf centroids and leaf offsets into the rows (the ANN index)
    NAME.hashes.npy    row number -> DuckDB hash() of its embedding (what changed, for updates)
    NAME.manifest.json build id, row count, a fingerprint of the ids, index parameters

A publish after a small build updates the previous index instead of refitting k-means
(`update_index`): rows whose id and embedding hash are unchanged keep their leaf, new or
changed rows go to the leaf whose centroid is nearest, removed rows are dropped; the
centroids stay as fitted. An updated index never rewrites the rows it was fitted on: its
folder holds them hard-linked from the previous one as NAME.base.{vectors,ids,ivf,hashes}
and beside them a tail of the rows added or changed since the fit, grouped by leaf too
(NAME.tail.{vectors,ids,hashes,offsets}.npy), and the base rows removed or changed since
(NAME.dead.npy); a query scans each probed leaf's base rows, skipping dead ones, and its
tail rows. Probing quality drifts as the data moves away from the fit, so
once the rows added, changed or removed since the last fit exceed REFIT_SHARE of the rows
it was fitted on, the next publish refits from scratch (`build_index`).

Why IVF and not HNSW: the rows are split into about 8 * sqrt(n) leaves by spherical
k-means, and a query scans, exactly, the leaves whose centroids are most similar to it
until `min_candidates` rows have been scored. Building it for 1M rows takes a couple of
minutes on 2 cores, where a usearch HNSW graph took 26 minutes, and a query is one product
with the centroids plus a few BLAS products over contiguous rows (a few ms). Its recall@10
against exact search is measured by bench/query_speed.py.

A reader passes the fingerprint it expects (recorded in the serving copy by the same
publish); a missing or mismatched index is never used: search falls back to exact search
over the vectors it was handed, with a warning, so a stale index cannot give wrong answers.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ingest.embedder import EMBEDDING_DIM

# IVF parameters, tuned with bench/query_speed.py for recall@10 >= 0.95 at 1M vectors.
LEAVES_PER_SQRT_N = 8  # k-means leaves: 8 * sqrt(n), 8,000 at 1M rows (~125 rows each)
TRAIN_ROWS_PER_LEAF = 32  # k-means is fitted on a seeded sample of 32 rows per leaf
TRAIN_ITERATIONS = 6
MIN_CANDIDATES = 4_096  # rows scored exactly per query: leaves are probed best-first to this
MAX_PROBES = 256  # and never more leaves than this
# Below this many rows exact search is faster than the index and always exact.
EXACT_BELOW = 20_000
# The drift bound of update_index: refit k-means once rows added, changed or removed since
# the last fit exceed this share of the rows it was fitted on (25 +1% refreshes).
REFIT_SHARE = 0.25
ASSIGN_BATCH = 65_536  # rows per centroid product when assigning new rows to leaves

SearchMode = Literal["auto", "ann", "exact"]


class StaleIndexWarning(UserWarning):
    """The ANN index is missing or does not match the data; exact search is used instead."""


@dataclass(frozen=True)
class Manifest:
    name: str
    build_id: str
    n: int
    dim: int
    fingerprint: str
    has_ann: bool
    n_leaves: int
    # what update_index needs: the row count k-means was fitted on, the rows added, changed
    # or removed since, and which hash() the hashes file holds (DuckDB's, per version)
    trained_n: int = 0
    changed_since_fit: int = 0
    hash_kind: str = ""
    # an updated index: its base (NAME.base.*, linked from the fit's) and a tail of tail_n
    # rows added or changed since, with dead_n base rows removed or changed since
    tailed: bool = False
    tail_n: int = 0
    dead_n: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def fingerprint(ids: Sequence[str] | np.ndarray) -> str:
    """sha256 over the ids in row order: any added, removed or reordered id changes it."""
    digest = hashlib.sha256()
    for chunk_start in range(0, len(ids), 100_000):
        chunk = ids[chunk_start : chunk_start + 100_000]
        rows = chunk.tolist() if isinstance(chunk, np.ndarray) else chunk
        digest.update("\n".join(map(str, rows)).encode("utf-8"))
        digest.update(b"\n")
    return f"{len(ids)}:{digest.hexdigest()}"


def normalize(vectors: np.ndarray) -> np.ndarray:
    """float32 rows of unit length (zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


BASE = "base"  # the infix of an updated index's base files (NAME.base.*)
BASE_FILES = ("ann", "ids", "vectors", "hashes")


def _paths(directory: Path, name: str, part: str = "") -> dict[str, Path]:
    """The files of an index's base: NAME.* as build_index writes them, NAME.base.* in an
    updated (tailed) index, which hard-links them from the index it updated. The other
    name keeps an engram from before tails, which knows NAME.* alone, off an updated
    index: it finds no NAME.vectors.npy and searches exactly instead of missing the tail."""
    stem = f"{name}.{part}." if part else f"{name}."
    return {
        "ann": directory / f"{stem}ivf.npz",
        "ids": directory / f"{stem}ids.npy",
        "vectors": directory / f"{stem}vectors.npy",
        "manifest": directory / f"{name}.manifest.json",
        "hashes": directory / f"{stem}hashes.npy",
    }


def _tail_paths(directory: Path, name: str) -> dict[str, Path]:
    """An updated index's rows since the fit (Tail) and its base's dead rows."""
    return {
        "ids": directory / f"{name}.tail.ids.npy",
        "vectors": directory / f"{name}.tail.vectors.npy",
        "hashes": directory / f"{name}.tail.hashes.npy",
        "offsets": directory / f"{name}.tail.offsets.npy",
        "dead": directory / f"{name}.dead.npy",
    }


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def build_index(
    directory: Path,
    name: str,
    ids: Sequence[str] | np.ndarray,
    vectors: np.ndarray,
    build_id: str,
    *,
    ann: bool = True,
    seed: int = 0,
    hashes: np.ndarray | None = None,
    hash_kind: str = "",
) -> Manifest:
    """Write NAME.* into directory; the manifest is written last, so a crash mid-way leaves
    no manifest and readers treat the index as missing.

    The fingerprint is over `ids` as given; the files hold the rows regrouped leaf by leaf.
    `hashes` (one per id, e.g. DuckDB's hash() of the embedding, named by hash_kind) are
    kept beside the rows so a later publish can update the index instead of refitting it.
    """
    directory.mkdir(parents=True, exist_ok=True)
    paths = _paths(directory, name)
    paths["manifest"].unlink(missing_ok=True)
    for stale in (*_paths(directory, name, BASE).values(), *_tail_paths(directory, name).values()):
        if stale.name != paths["manifest"].name:
            stale.unlink(missing_ok=True)  # an updated index's, were it written here before
    id_array = np.asarray([str(i) for i in ids])
    matrix = normalize(vectors) if len(id_array) else np.zeros((0, EMBEDDING_DIM), np.float32)
    if matrix.shape != (len(id_array), EMBEDDING_DIM):
        raise ValueError(f"expected ({len(id_array)}, {EMBEDDING_DIM}) vectors, got {matrix.shape}")
    id_fingerprint = fingerprint(id_array)
    hash_array = None if hashes is None else np.asarray(hashes, dtype=np.uint64)
    if hash_array is not None and hash_array.shape != (len(id_array),):
        raise ValueError(f"expected {len(id_array)} hashes, got {hash_array.shape}")
    has_ann = ann and len(id_array) > 0
    n_leaves = 0
    if has_ann:
        # A flat k-means, not the clustering's recursive partition: the top levels of a
        # recursive one average so many groups that members of one tight group scatter
        # across leaves (recall@10 0.61 vs 0.96 at 1M, bench/query_speed.py).
        from engram.numeric.clustering import kmeans_assign

        k = n_leaves_for(len(matrix))
        leaf_of = kmeans_assign(
            matrix, k, seed, sample_rows=TRAIN_ROWS_PER_LEAF * k, iterations=TRAIN_ITERATIONS
        )
        counts = np.bincount(leaf_of)
        kept = np.flatnonzero(counts)  # drop leaves no row went to
        order = np.argsort(leaf_of, kind="stable")
        offsets = np.zeros(len(kept) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum(counts[kept])
        id_array, matrix = id_array[order], matrix[order]
        if hash_array is not None:
            hash_array = hash_array[order]
        centroids = np.add.reduceat(matrix, offsets[:-1], axis=0)
        np.savez(paths["ann"], centroids=normalize(centroids), offsets=offsets)
        n_leaves = len(kept)
    else:
        paths["ann"].unlink(missing_ok=True)
    np.save(paths["ids"], id_array)
    np.save(paths["vectors"], matrix)
    if hash_array is not None:
        np.save(paths["hashes"], hash_array)
    else:
        paths["hashes"].unlink(missing_ok=True)
    manifest = Manifest(
        name=name,
        build_id=build_id,
        n=len(id_array),
        dim=EMBEDDING_DIM,
        fingerprint=id_fingerprint,
        has_ann=has_ann,
        n_leaves=n_leaves,
        trained_n=len(id_array) if has_ann else 0,
        changed_since_fit=0,
        hash_kind=hash_kind if hash_array is not None else "",
    )
    _atomic_write_text(paths["manifest"], manifest.to_json())
    return manifest


@dataclass(frozen=True)
class IndexUpdate:
    """What update_index did: how ("linked": nothing changed, files hard-linked; "updated":
    rows added/removed without refitting), and the row counts involved (a row whose
    vector changed counts as removed and added)."""

    manifest: Manifest
    how: Literal["linked", "updated"]
    kept: int
    added: int
    removed: int


def update_index(
    previous: Path,
    directory: Path,
    name: str,
    ids: np.ndarray,
    hashes: np.ndarray,
    fetch: Callable[[np.ndarray], np.ndarray],
    build_id: str,
    *,
    hash_kind: str,
) -> IndexUpdate | None:
    """Write NAME.* into directory from the index in `previous`, changed only where the data
    changed: `ids` (in fingerprint order) with `hashes` of their embeddings are the new
    contents; fetch(some_ids) returns the vectors of the rows that are new or changed.

    The rows k-means was fitted on (the base) are never rewritten: the new index hard-links
    the previous base files (NAME.base.*) and writes a tail (NAME.tail.*) of the rows added
    or changed since the fit, each in the leaf of its nearest centroid, and the base rows
    removed or changed since (NAME.dead.npy). Rewriting the base's vectors file in the new
    leaf order instead (1.5 GB at 1M patterns) took 4.6-8.0 s of a 10M-event refresh's
    publish, and its disk writes slowed the tables' syncs beside it (a publish replay:
    13.6 / 14.2 s against 10.9 / 12.0 s with the files linked). The tail stays within the
    drift bound: it holds at most the rows changed since the fit.

    Returns None, writing nothing, when the previous index cannot be updated and the caller
    must build_index from scratch: it is missing, has no ANN part or no hashes, its hashes
    are of another kind, or the drift bound (REFIT_SHARE) would be passed. The files of
    `previous` are only read, never written: readers may have them open.
    """
    try:
        old = json.loads((previous / f"{name}.manifest.json").read_text())
    except (OSError, ValueError):
        return None
    tailed = bool(old.get("tailed"))
    old_base = _paths(previous, name, BASE if tailed else "")
    old_tail = _tail_paths(previous, name)
    if (
        not old.get("has_ann")
        or old.get("hash_kind") != hash_kind
        or not hash_kind
        or not all(old_base[k].exists() for k in BASE_FILES)
        or (tailed and not all(path.exists() for path in old_tail.values()))
    ):
        return None
    ids = np.asarray(ids, dtype=str)  # saved as text: an object array would be pickled
    hashes = np.asarray(hashes, dtype=np.uint64)
    base_ids = np.load(old_base["ids"])
    base_hashes = np.load(old_base["hashes"])
    if len(base_ids) == 0 or len(base_hashes) != len(base_ids):
        return None
    n_base = len(base_ids)
    ivf = InvertedFile.load(old_base["ann"])
    n_leaves = len(ivf.centroids)
    if tailed:
        tail_ids = np.load(old_tail["ids"])
        tail_hashes = np.load(old_tail["hashes"])
        tail_offsets = np.load(old_tail["offsets"])
        dead = np.load(old_tail["dead"])
        if (
            len(tail_hashes) != len(tail_ids)
            or len(tail_offsets) != n_leaves + 1
            or int(tail_offsets[-1]) != len(tail_ids)
            or (len(dead) and (int(dead.min()) < 0 or int(dead.max()) >= n_base))
        ):
            return None  # not what this code writes: refitted rather than trusted
    else:
        tail_ids = np.zeros(0, dtype=base_ids.dtype)
        tail_hashes = np.zeros(0, dtype=np.uint64)
        tail_offsets = np.zeros(n_leaves + 1, dtype=np.int64)
        dead = np.zeros(0, dtype=np.int64)
    # the previous index's live rows: base rows not dead, then the tail's
    old_ids = np.concatenate([base_ids, tail_ids])
    old_hashes = np.concatenate([base_hashes, tail_hashes])
    live = np.ones(len(old_ids), dtype=bool)
    live[dead] = False
    live_rows = np.flatnonzero(live)
    if len(live_rows) == 0:
        return None
    by_id = live_rows[np.argsort(old_ids[live_rows], kind="stable")]
    sorted_ids = old_ids[by_id]
    # looked up in sorted order: 1M string lookups in id order took 0.8-1.0 s, sorted
    # (their sort included) 0.4 s
    query_order = np.argsort(ids, kind="stable")
    position = np.empty(len(ids), dtype=np.int64)
    position[query_order] = np.searchsorted(sorted_ids, ids[query_order])
    position = np.minimum(position, len(sorted_ids) - 1)
    old_row = by_id[position]
    same = (sorted_ids[position] == ids) & (old_hashes[old_row] == hashes)
    kept_rows = old_row[same]
    added_ids, added_hashes = ids[~same], hashes[~same]
    removed = len(live_rows) - len(kept_rows)
    directory.mkdir(parents=True, exist_ok=True)
    manifest_path = directory / f"{name}.manifest.json"
    manifest_path.unlink(missing_ok=True)
    id_fingerprint = fingerprint(ids)
    if len(added_ids) == 0 and removed == 0 and old.get("fingerprint") == id_fingerprint:
        # never written again: share them
        linked = [
            (old_base[k], _paths(directory, name, BASE if tailed else "")[k]) for k in BASE_FILES
        ]
        if tailed:
            linked += [(old_tail[k], _tail_paths(directory, name)[k]) for k in old_tail]
        for source, target in linked:
            target.unlink(missing_ok=True)
            os.link(source, target)
        manifest = Manifest(**{**old, "build_id": build_id})
        _atomic_write_text(manifest_path, manifest.to_json())
        return IndexUpdate(manifest, "linked", len(kept_rows), 0, 0)
    changed = int(old.get("changed_since_fit", 0)) + len(added_ids) + removed
    if changed > REFIT_SHARE * max(int(old.get("trained_n", 0)), 1):
        return None

    new_vectors = (
        normalize(fetch(added_ids))
        if len(added_ids)
        else np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
    )
    if new_vectors.shape != (len(added_ids), EMBEDDING_DIM):
        raise ValueError(f"fetch returned {new_vectors.shape} for {len(added_ids)} ids")
    new_leaf = np.zeros(len(added_ids), dtype=np.int64)
    for lo in range(0, len(added_ids), ASSIGN_BATCH):
        block = new_vectors[lo : lo + ASSIGN_BATCH] @ ivf.centroids.T
        new_leaf[lo : lo + ASSIGN_BATCH] = np.argmax(block, axis=1)
    kept_tail = np.sort(kept_rows[kept_rows >= n_base]) - n_base  # in leaf order
    kept_base = np.zeros(n_base, dtype=bool)
    kept_base[kept_rows[kept_rows < n_base]] = True
    new_dead = np.flatnonzero(~kept_base).astype(np.int64)
    old_tail_leaf = np.repeat(np.arange(n_leaves), np.diff(tail_offsets))
    tail_leaf = np.concatenate([old_tail_leaf[kept_tail], new_leaf])
    order = np.argsort(tail_leaf, kind="stable")
    if len(kept_tail):
        old_tail_vectors = np.load(old_tail["vectors"], mmap_mode="r")
        kept_vectors = np.asarray(old_tail_vectors[kept_tail], dtype=np.float32)
    else:
        kept_vectors = np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
    offsets = np.zeros(n_leaves + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(np.bincount(tail_leaf, minlength=n_leaves))
    base = _paths(directory, name, BASE)
    for key in BASE_FILES:  # the base is shared, never rewritten
        base[key].unlink(missing_ok=True)
        os.link(old_base[key], base[key])
    tail = _tail_paths(directory, name)
    np.save(tail["vectors"], np.concatenate([kept_vectors, new_vectors])[order])
    np.save(tail["ids"], np.concatenate([tail_ids[kept_tail], added_ids])[order])
    np.save(tail["hashes"], np.concatenate([tail_hashes[kept_tail], added_hashes])[order])
    np.save(tail["offsets"], offsets)
    np.save(tail["dead"], new_dead)
    manifest = Manifest(
        name=name,
        build_id=build_id,
        n=len(ids),
        dim=EMBEDDING_DIM,
        fingerprint=id_fingerprint,
        has_ann=True,
        n_leaves=n_leaves,
        trained_n=int(old.get("trained_n", 0)),
        changed_since_fit=changed,
        hash_kind=hash_kind,
        tailed=True,
        tail_n=len(order),
        dead_n=len(new_dead),
    )
    _atomic_write_text(manifest_path, manifest.to_json())
    return IndexUpdate(manifest, "updated", len(kept_rows), len(added_ids), removed)


def n_leaves_for(n: int) -> int:
    """How many k-means leaves the inverted file gets for n rows."""
    return max(1, min(n, round(LEAVES_PER_SQRT_N * math.sqrt(n))))


@dataclass(frozen=True)
class InvertedFile:
    """Leaf centroids (unit rows) and where each leaf's rows start and end."""

    centroids: np.ndarray  # (n_leaves, dim) float32
    offsets: np.ndarray  # (n_leaves + 1,) int64

    @classmethod
    def load(cls, path: Path) -> InvertedFile:
        with np.load(path) as data:
            return cls(np.asarray(data["centroids"]), np.asarray(data["offsets"]))

    def probe(
        self,
        query: np.ndarray,
        min_candidates: int,
        max_probes: int,
        sizes: np.ndarray | None = None,
    ) -> np.ndarray:
        """The leaves nearest the query, best first, until their `sizes` (rows per leaf;
        the offsets' by default) add up to min_candidates rows."""
        sims = self.centroids @ query
        probes = min(len(sims), max_probes)
        best = np.arange(len(sims))
        if probes < len(sims):
            best = np.argpartition(-sims, probes - 1)[:probes]
        best = best[np.argsort(-sims[best], kind="stable")]
        per_leaf = np.diff(self.offsets) if sizes is None else sizes
        enough = int(np.searchsorted(np.cumsum(per_leaf[best]), min_candidates)) + 1
        return best[:enough]

    def candidates(self, query: np.ndarray, min_candidates: int, max_probes: int) -> list[slice]:
        """Row ranges of the leaves nearest the query, best first, until min_candidates rows."""
        best = self.probe(query, min_candidates, max_probes)
        starts, stops = self.offsets[best], self.offsets[best + 1]
        return [slice(int(lo), int(hi)) for lo, hi in zip(starts, stops, strict=True)]


@dataclass(frozen=True)
class Tail:
    """What updates added to an index since its k-means fit (update_index): the rows added
    or changed since, grouped by leaf as the base's rows are, and the base rows removed or
    changed since (dead: searched past, never returned)."""

    ids: np.ndarray  # the tail's ids, leaf by leaf
    matrix: np.ndarray  # (len(ids), dim) float32 unit rows, memory-mapped
    offsets: np.ndarray  # (n_leaves + 1,) where each leaf's tail rows start and end
    dead: np.ndarray  # sorted row numbers of the base


@dataclass(frozen=True)
class Hits:
    """Nearest rows, best first: ids, cosine similarities, row numbers, and how found."""

    ids: np.ndarray
    similarities: np.ndarray
    rows: np.ndarray
    method: Literal["ann", "exact"]


def _top_k(rows: np.ndarray, sims: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k rows of highest similarity, best first, ties by row number."""
    take = min(k, len(rows))
    if take <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    best = np.argpartition(-sims, take - 1)[:take] if take < len(rows) else np.arange(len(rows))
    best = best[np.lexsort((rows[best], -sims[best]))]
    return rows[best].astype(np.int64), sims[best]


def exact_top_k(matrix: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row numbers and cosine similarities of the k rows nearest the unit query."""
    sims = np.asarray(matrix @ query, dtype=np.float32)
    return _top_k(np.arange(len(sims)), sims, k)


class VectorIndex:
    """Search one set of vectors; ANN when trusted and worth it, exact otherwise.

    `ids` and `matrix` are the live rows in row order (Hits.rows number them): the base's
    rows, then, with a `tail`, its rows after the base's live ones. A tailed index
    searches the base in place (its dead rows skipped) and the tail beside it; `matrix`
    of a tailed index is gathered into memory when first asked for."""

    def __init__(
        self,
        name: str,
        ids: np.ndarray,
        matrix: np.ndarray,
        ann: InvertedFile | None = None,
        *,
        tail: Tail | None = None,
        min_candidates: int = MIN_CANDIDATES,
        max_probes: int = MAX_PROBES,
        exact_below: int = EXACT_BELOW,
        problem: str | None = None,
    ) -> None:
        self.name = name
        self.base = matrix
        self.ann = ann
        self.tail = tail
        self.min_candidates = min_candidates  # raise for recall, lower for speed
        self.max_probes = max_probes
        self.exact_below = exact_below
        self.problem = problem  # why the ANN index is not used, if it is not
        self._matrix: np.ndarray | None = matrix
        self.ids = ids
        if tail is not None:
            self._n_base = len(ids)
            self._base_live = np.ones(len(ids), dtype=bool)
            self._base_live[tail.dead] = False
            self.ids = np.concatenate([ids[self._base_live], tail.ids])
            self._matrix = None
            if ann is not None:  # live rows per leaf: how far a query probes
                dead_leaf = np.searchsorted(ann.offsets, tail.dead, side="right") - 1
                self._sizes = (
                    np.diff(ann.offsets)
                    - np.bincount(dead_leaf, minlength=len(ann.centroids))
                    + np.diff(tail.offsets)
                )

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def matrix(self) -> np.ndarray:
        """The live rows' vectors, in row order."""
        if self._matrix is None:
            assert self.tail is not None
            base = np.asarray(self.base, dtype=np.float32)[self._base_live]
            self._matrix = np.concatenate([base, np.asarray(self.tail.matrix)])
        return self._matrix

    def search(self, query: np.ndarray, k: int, mode: SearchMode = "auto") -> Hits:
        """The k nearest rows to one query vector (normalized here)."""
        q = normalize(np.asarray(query, dtype=np.float32).reshape(-1))
        use_ann = self.ann is not None and (
            mode == "ann" or (mode == "auto" and len(self) >= self.exact_below)
        )
        if mode == "ann" and self.ann is None:
            warnings.warn(
                f"{self.name} ANN index unusable ({self.problem}); using exact search",
                StaleIndexWarning,
                stacklevel=2,
            )
        if use_ann:
            rows, sims = self._ann(q, k)
            method: Literal["ann", "exact"] = "ann"
        elif self.tail is not None:
            rows, sims = self._exact_tailed(q, k)
            method = "exact"
        else:
            rows, sims = exact_top_k(self.matrix, q, k)
            method = "exact"
        return Hits(ids=self.ids[rows], similarities=sims, rows=rows, method=method)

    def _live(self, rows: np.ndarray) -> np.ndarray:
        """Row numbers of base-then-tail order (dead rows included) as live row numbers."""
        assert self.tail is not None
        n_live_base = self._n_base - len(self.tail.dead)
        in_tail = rows >= self._n_base
        return np.where(
            in_tail,
            rows - self._n_base + n_live_base,
            rows - np.searchsorted(self.tail.dead, rows),
        )

    def _exact_tailed(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact search over the base in place (its dead rows left out) and the tail."""
        assert self.tail is not None
        sims = np.concatenate(
            [np.asarray(self.base @ q, dtype=np.float32)[self._base_live], self.tail.matrix @ q]
        ).astype(np.float32)
        return _top_k(np.arange(len(sims)), sims, k)

    def _ann(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top k among the rows of the best-matching leaves."""
        assert self.ann is not None
        if self.tail is None:
            ranges = self.ann.candidates(q, max(self.min_candidates, k), self.max_probes)
            sims = np.concatenate([self.base[r] @ q for r in ranges]).astype(np.float32)
            rows = np.concatenate([np.arange(r.start, r.stop) for r in ranges])
            return _top_k(rows, sims, k)
        tail, offsets = self.tail, self.ann.offsets
        leaves = self.ann.probe(q, max(self.min_candidates, k), self.max_probes, self._sizes)
        parts_sims, parts_rows = [], []
        for leaf in leaves.tolist():
            lo, hi = int(offsets[leaf]), int(offsets[leaf + 1])
            parts_sims.append(self.base[lo:hi] @ q)
            parts_rows.append(np.arange(lo, hi))
            lo, hi = int(tail.offsets[leaf]), int(tail.offsets[leaf + 1])
            if hi > lo:
                parts_sims.append(tail.matrix[lo:hi] @ q)
                parts_rows.append(np.arange(lo, hi) + self._n_base)
        sims = np.concatenate(parts_sims).astype(np.float32)
        rows = np.concatenate(parts_rows)
        alive = (rows >= self._n_base) | self._base_live[np.minimum(rows, self._n_base - 1)]
        found, similarities = _top_k(rows[alive], sims[alive], k)
        return self._live(found), similarities


def open_index(
    directory: Path,
    name: str,
    *,
    expected_fingerprint: str | None,
    fallback: Callable[[], tuple[np.ndarray, np.ndarray]] | None = None,
    exact_below: int = EXACT_BELOW,
) -> VectorIndex:
    """Open NAME from directory if its manifest matches expected_fingerprint.

    Otherwise warn (StaleIndexWarning) and build an exact-only index from fallback(), which
    returns (ids, vectors) read from the serving copy itself, so answers stay correct.
    """
    index, problem = _open(directory, name, expected_fingerprint, exact_below)
    if index is not None:
        return index
    warnings.warn(
        f"{name} vector index {problem}; falling back to exact search",
        StaleIndexWarning,
        stacklevel=2,
    )
    if fallback is None:
        raise FileNotFoundError(f"{name} vector index {problem}")
    ids, vectors = fallback()
    return VectorIndex(
        name,
        np.asarray(ids),
        normalize(vectors),
        None,
        exact_below=exact_below,
        problem=problem,
    )


def _open(
    directory: Path, name: str, expected_fingerprint: str | None, exact_below: int
) -> tuple[VectorIndex | None, str]:
    """The index, or None and a short reason why it cannot be used."""
    manifest_path = directory / f"{name}.manifest.json"
    if not manifest_path.exists():
        return None, "is missing"
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        return None, "has an unreadable manifest"
    if expected_fingerprint is not None and manifest.get("fingerprint") != expected_fingerprint:
        return None, (
            f"is stale (built for {manifest.get('n')} ids in build {manifest.get('build_id')}, "
            "which differ from the data)"
        )
    tailed = bool(manifest.get("tailed"))
    paths = _paths(directory, name, BASE if tailed else "")
    needed = [paths["ids"], paths["vectors"]]
    if manifest.get("has_ann") or tailed:
        needed.append(paths["ann"])
    if tailed:
        needed += list(_tail_paths(directory, name).values())
    for path in needed:
        if not path.exists():
            return None, f"lacks {path.name}"
    ids = np.asarray(np.load(paths["ids"], mmap_mode="r"))
    matrix = np.load(paths["vectors"], mmap_mode="r")
    ivf = None
    if manifest.get("has_ann"):
        try:
            ivf = InvertedFile.load(paths["ann"])
        except (OSError, ValueError, KeyError):
            ivf = None
        if ivf is None or int(ivf.offsets[-1]) != len(ids):
            return None, f"{paths['ann'].name} is unreadable or has the wrong size"
    tail = None
    if tailed:
        parts = _tail_paths(directory, name)
        try:
            tail = Tail(
                ids=np.asarray(np.load(parts["ids"])),
                matrix=np.load(parts["vectors"], mmap_mode="r"),
                offsets=np.load(parts["offsets"]),
                dead=np.load(parts["dead"]),
            )
        except (OSError, ValueError):
            return None, "has an unreadable tail"
        n_live = len(ids) - len(np.unique(tail.dead)) + len(tail.ids)
        if (
            ivf is None
            or len(tail.offsets) != len(ivf.centroids) + 1
            or int(tail.offsets[-1]) != len(tail.ids)
            or tail.matrix.shape != (len(tail.ids), EMBEDDING_DIM)
            or (len(tail.dead) and (tail.dead.min() < 0 or tail.dead.max() >= len(ids)))
            or n_live != manifest.get("n")
        ):
            return None, "has a tail that does not match its base"
    index = VectorIndex(
        name,
        ids,
        matrix,
        ivf,
        tail=tail,
        exact_below=exact_below,
        problem=None if ivf is not None else "built without ANN",
    )
    return index, ""
