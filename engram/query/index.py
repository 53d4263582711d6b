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
centroids stay as fitted. Probing quality drifts as the data moves away from the fit, so
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


def _paths(directory: Path, name: str) -> dict[str, Path]:
    return {
        "ann": directory / f"{name}.ivf.npz",
        "ids": directory / f"{name}.ids.npy",
        "vectors": directory / f"{name}.vectors.npy",
        "manifest": directory / f"{name}.manifest.json",
        "hashes": directory / f"{name}.hashes.npy",
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

    Returns None, writing nothing, when the previous index cannot be updated and the caller
    must build_index from scratch: it is missing, has no ANN part or no hashes, its hashes
    are of another kind, or the drift bound (REFIT_SHARE) would be passed. The files of
    `previous` are only read, never written: readers may have them open.
    """
    old_paths, paths = _paths(previous, name), _paths(directory, name)
    try:
        old = json.loads(old_paths["manifest"].read_text())
    except (OSError, ValueError):
        return None
    if (
        not old.get("has_ann")
        or old.get("hash_kind") != hash_kind
        or not hash_kind
        or not all(old_paths[k].exists() for k in ("ann", "ids", "vectors", "hashes"))
    ):
        return None
    ids = np.asarray(ids)
    hashes = np.asarray(hashes, dtype=np.uint64)
    old_ids = np.load(old_paths["ids"])
    old_hashes = np.load(old_paths["hashes"])
    if len(old_ids) == 0 or len(old_hashes) != len(old_ids):
        return None
    by_id = np.argsort(old_ids, kind="stable")
    sorted_ids = old_ids[by_id]
    position = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
    old_row = by_id[position]
    same = (sorted_ids[position] == ids) & (old_hashes[old_row] == hashes)
    kept_rows = old_row[same]
    added_ids, added_hashes = ids[~same], hashes[~same]
    removed = len(old_ids) - len(kept_rows)
    directory.mkdir(parents=True, exist_ok=True)
    paths["manifest"].unlink(missing_ok=True)
    id_fingerprint = fingerprint(ids)
    if len(added_ids) == 0 and removed == 0 and old.get("fingerprint") == id_fingerprint:
        for key in ("ann", "ids", "vectors", "hashes"):  # never written again: share them
            paths[key].unlink(missing_ok=True)
            os.link(old_paths[key], paths[key])
        manifest = Manifest(**{**old, "build_id": build_id})
        _atomic_write_text(paths["manifest"], manifest.to_json())
        return IndexUpdate(manifest, "linked", len(kept_rows), 0, 0)
    changed = int(old.get("changed_since_fit", 0)) + len(added_ids) + removed
    if changed > REFIT_SHARE * max(int(old.get("trained_n", 0)), 1):
        return None

    ivf = InvertedFile.load(old_paths["ann"])
    n_leaves = len(ivf.centroids)
    old_leaf = np.repeat(np.arange(n_leaves), np.diff(ivf.offsets))
    new_vectors = normalize(fetch(added_ids)) if len(added_ids) else None
    if new_vectors is not None and new_vectors.shape != (len(added_ids), EMBEDDING_DIM):
        raise ValueError(f"fetch returned {new_vectors.shape} for {len(added_ids)} ids")
    new_leaf = np.zeros(len(added_ids), dtype=np.int64)
    for lo in range(0, len(added_ids), ASSIGN_BATCH):
        assert new_vectors is not None
        block = new_vectors[lo : lo + ASSIGN_BATCH] @ ivf.centroids.T
        new_leaf[lo : lo + ASSIGN_BATCH] = np.argmax(block, axis=1)
    leaf = np.concatenate([old_leaf[kept_rows], new_leaf])
    order = np.argsort(leaf, kind="stable")
    n_kept = len(kept_rows)
    all_ids = np.concatenate([old_ids[kept_rows], added_ids])
    all_hashes = np.concatenate([old_hashes[kept_rows], added_hashes])
    offsets = np.zeros(n_leaves + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(np.bincount(leaf, minlength=n_leaves))
    _write_leaf_ordered(
        old_paths["vectors"], ivf.offsets, paths["vectors"], offsets, order, kept_rows, new_vectors
    )
    np.savez(paths["ann"], centroids=ivf.centroids, offsets=offsets)
    np.save(paths["ids"], all_ids[order])
    np.save(paths["hashes"], all_hashes[order])
    manifest = Manifest(
        name=name,
        build_id=build_id,
        n=len(order),
        dim=EMBEDDING_DIM,
        fingerprint=id_fingerprint,
        has_ann=True,
        n_leaves=n_leaves,
        trained_n=int(old.get("trained_n", 0)),
        changed_since_fit=changed,
        hash_kind=hash_kind,
    )
    _atomic_write_text(paths["manifest"], manifest.to_json())
    return IndexUpdate(manifest, "updated", n_kept, len(added_ids), removed)


def _write_leaf_ordered(
    old_path: Path,
    old_offsets: np.ndarray,
    path: Path,
    offsets: np.ndarray,
    order: np.ndarray,
    kept_rows: np.ndarray,
    new_vectors: np.ndarray | None,
) -> None:
    """Write the updated index's vectors file: row i is the kept old row kept_rows[order[i]]
    or new row order[i] - len(kept_rows), in leaf order (`offsets`). A kept row stays in its
    leaf, so the rows of a run of leaves come from the same leaves' contiguous rows of the
    old file (`old_offsets`): read with one sequential read per run of leaves, and the new
    file written with write(). Gathering them from a memory map of the old file into a
    new 100 MB array per block was two thirds of a 1M-row update (py-spy), 5.5-5.9 s
    against 2.8 s now."""
    n_kept = len(kept_rows)
    header = np.load(old_path, mmap_mode="r")
    if header.shape[1:] != (EMBEDDING_DIM,) or header.dtype != np.float32:
        raise ValueError(f"{old_path}: not a float32 matrix of width {EMBEDDING_DIM}")
    data_start, row_bytes = header.offset, EMBEDDING_DIM * 4
    del header
    with old_path.open("rb") as old, path.open("wb") as out:
        np.lib.format.write_array_header_1_0(
            out,
            {
                "descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
                "fortran_order": False,
                "shape": (len(order), EMBEDDING_DIM),
            },
        )
        runs = []  # (first leaf, last leaf + 1): runs of leaves of about ASSIGN_BATCH rows
        first = 0
        while first < len(offsets) - 1:
            last = int(np.searchsorted(offsets, offsets[first] + ASSIGN_BATCH, side="right"))
            last = min(max(last - 1, first + 1), len(offsets) - 1)
            runs.append((first, last))
            first = last
        # buffers allocated once (a fresh 100 MB array per run was faulted in page by
        # page), and each block one gather (np.take) from the run's old rows with its new
        # rows placed after them: a boolean-mask assignment copied every block twice
        n_added = 0 if new_vectors is None else len(new_vectors)
        most_old = max(int(old_offsets[b] - old_offsets[a]) for a, b in runs)
        most_new = max(int(offsets[b] - offsets[a]) for a, b in runs)
        source_buffer = np.empty((most_old + min(most_new, n_added), EMBEDDING_DIM), np.float32)
        block_buffer = np.empty((most_new, EMBEDDING_DIM), dtype=np.float32)
        for first, last in runs:
            lo, hi = int(old_offsets[first]), int(old_offsets[last])
            old.seek(data_start + lo * row_bytes)
            if (
                old.readinto(memoryview(source_buffer[: hi - lo]).cast("B"))
                != (hi - lo) * row_bytes
            ):
                raise ValueError(f"{old_path} is shorter than its index says")
            chunk = order[offsets[first] : offsets[last]]
            block = block_buffer[: len(chunk)]
            from_old = chunk < n_kept
            rows = np.empty(len(chunk), dtype=np.int64)  # of source_buffer, per block row
            rows[from_old] = kept_rows[chunk[from_old]] - lo
            added = np.flatnonzero(~from_old)
            if len(added):
                assert new_vectors is not None
                rows[added] = hi - lo + np.arange(len(added))
                source_buffer[hi - lo : hi - lo + len(added)] = new_vectors[chunk[added] - n_kept]
            np.take(source_buffer[: hi - lo + len(added)], rows, axis=0, out=block)
            out.write(memoryview(block).cast("B"))


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

    def candidates(self, query: np.ndarray, min_candidates: int, max_probes: int) -> list[slice]:
        """Row ranges of the leaves nearest the query, best first, until min_candidates rows."""
        sims = self.centroids @ query
        probes = min(len(sims), max_probes)
        best = np.arange(len(sims))
        if probes < len(sims):
            best = np.argpartition(-sims, probes - 1)[:probes]
        best = best[np.argsort(-sims[best], kind="stable")]
        sizes = self.offsets[best + 1] - self.offsets[best]
        enough = int(np.searchsorted(np.cumsum(sizes), min_candidates)) + 1
        starts, stops = self.offsets[best[:enough]], self.offsets[best[:enough] + 1]
        return [slice(int(lo), int(hi)) for lo, hi in zip(starts, stops, strict=True)]


@dataclass(frozen=True)
class Hits:
    """Nearest rows, best first: ids, cosine similarities, row numbers, and how found."""

    ids: np.ndarray
    similarities: np.ndarray
    rows: np.ndarray
    method: Literal["ann", "exact"]


def exact_top_k(matrix: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row numbers and cosine similarities of the k rows nearest the unit query."""
    n = len(matrix)
    k = min(k, n)
    if k <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    sims = np.asarray(matrix @ query, dtype=np.float32)
    rows = np.argpartition(-sims, k - 1)[:k] if k < n else np.arange(n)
    order = np.lexsort((rows, -sims[rows]))
    rows = rows[order]
    return rows.astype(np.int64), sims[rows]


class VectorIndex:
    """Search one set of vectors; ANN when trusted and worth it, exact otherwise."""

    def __init__(
        self,
        name: str,
        ids: np.ndarray,
        matrix: np.ndarray,
        ann: InvertedFile | None = None,
        *,
        min_candidates: int = MIN_CANDIDATES,
        max_probes: int = MAX_PROBES,
        exact_below: int = EXACT_BELOW,
        problem: str | None = None,
    ) -> None:
        self.name = name
        self.ids = ids
        self.matrix = matrix
        self.ann = ann
        self.min_candidates = min_candidates  # raise for recall, lower for speed
        self.max_probes = max_probes
        self.exact_below = exact_below
        self.problem = problem  # why the ANN index is not used, if it is not

    def __len__(self) -> int:
        return len(self.ids)

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
        else:
            rows, sims = exact_top_k(self.matrix, q, k)
            method = "exact"
        return Hits(ids=self.ids[rows], similarities=sims, rows=rows, method=method)

    def _ann(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top k among the rows of the best-matching leaves."""
        assert self.ann is not None
        ranges = self.ann.candidates(q, max(self.min_candidates, k), self.max_probes)
        sims = np.concatenate([self.matrix[r] @ q for r in ranges]).astype(np.float32)
        rows = np.concatenate([np.arange(r.start, r.stop) for r in ranges])
        take = min(k, len(rows))
        if take <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        best = np.argpartition(-sims, take - 1)[:take] if take < len(rows) else np.arange(len(rows))
        order = np.lexsort((rows[best], -sims[best]))
        best = best[order]
        return rows[best].astype(np.int64), sims[best]


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
    paths = _paths(directory, name)
    problem = _check(paths, expected_fingerprint)
    if problem is None:
        ids = np.load(paths["ids"], mmap_mode="r")
        matrix = np.load(paths["vectors"], mmap_mode="r")
        manifest = json.loads(paths["manifest"].read_text())
        ivf = None
        if manifest["has_ann"]:
            try:
                ivf = InvertedFile.load(paths["ann"])
            except (OSError, ValueError, KeyError):
                ivf = None
            if ivf is None or int(ivf.offsets[-1]) != len(ids):
                problem = f"{paths['ann'].name} is unreadable or has the wrong size"
        if problem is None:
            return VectorIndex(
                name,
                np.asarray(ids),
                matrix,
                ivf,
                exact_below=exact_below,
                problem=None if ivf is not None else "built without ANN",
            )
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


def _check(paths: dict[str, Path], expected_fingerprint: str | None) -> str | None:
    """None when the index files exist and match; else a short reason."""
    if not paths["manifest"].exists():
        return "is missing"
    try:
        manifest = json.loads(paths["manifest"].read_text())
    except (OSError, ValueError):
        return "has an unreadable manifest"
    if expected_fingerprint is not None and manifest.get("fingerprint") != expected_fingerprint:
        return (
            f"is stale (built for {manifest.get('n')} ids in build {manifest.get('build_id')}, "
            "which differ from the data)"
        )
    for key in ("ids", "vectors"):
        if not paths[key].exists():
            return f"lacks {paths[key].name}"
    if manifest.get("has_ann") and not paths["ann"].exists():
        return f"lacks {paths['ann'].name}"
    return None
