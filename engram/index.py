"""Vector search over pattern and context embeddings: an HNSW index (usearch) beside exact search.

The index lives in plain files next to the serving copy, never inside a DuckDB file: HNSW
persisted in DuckDB (duckdb-vss) has open crash and WAL-replay bugs that can leave the
warehouse unopenable. Per index NAME a folder holds:

    NAME.usearch       the HNSW graph (f16 vectors), opened memory-mapped (view=True)
    NAME.ids.npy       row number -> id (pattern_id or context_hash); usearch keys are row numbers
    NAME.vectors.npy   float32 unit vectors, memory-mapped: exact search and exact re-ranking
    NAME.manifest.json build id, row count and a fingerprint of the ids

A reader passes the fingerprint it expects (recorded in the serving copy by the same
publish); a missing or mismatched index is never used: search falls back to exact search
over the vectors it was handed, with a warning, so a stale index cannot give wrong answers.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from engram.config import EMBEDDING_DIM

# HNSW parameters, tuned with engram/bench_query.py for recall@10 >= 0.95 at 1M vectors.
CONNECTIVITY = 16
EXPANSION_ADD = 64
EXPANSION_SEARCH = 256
# Below this many rows exact search is faster than the graph and always exact.
EXACT_BELOW = 20_000
# ANN candidates fetched per requested result, then re-ranked exactly.
OVERFETCH = 2

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
    connectivity: int
    expansion_add: int

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def fingerprint(ids: Sequence[str] | np.ndarray) -> str:
    """sha256 over the ids in row order: any added, removed or reordered id changes it."""
    digest = hashlib.sha256()
    for chunk_start in range(0, len(ids), 100_000):
        chunk = ids[chunk_start : chunk_start + 100_000]
        digest.update("\n".join(str(i) for i in chunk).encode("utf-8"))
        digest.update(b"\n")
    return f"{len(ids)}:{digest.hexdigest()}"


def normalize(vectors: np.ndarray) -> np.ndarray:
    """float32 rows of unit length (zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


def _paths(directory: Path, name: str) -> dict[str, Path]:
    return {
        "ann": directory / f"{name}.usearch",
        "ids": directory / f"{name}.ids.npy",
        "vectors": directory / f"{name}.vectors.npy",
        "manifest": directory / f"{name}.manifest.json",
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
    connectivity: int = CONNECTIVITY,
    expansion_add: int = EXPANSION_ADD,
    threads: int = 0,
) -> Manifest:
    """Write NAME.* into directory; the manifest is written last, so a crash mid-way leaves
    no manifest and readers treat the index as missing."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = _paths(directory, name)
    paths["manifest"].unlink(missing_ok=True)
    id_array = np.asarray([str(i) for i in ids])
    matrix = normalize(vectors) if len(id_array) else np.zeros((0, EMBEDDING_DIM), np.float32)
    if matrix.shape != (len(id_array), EMBEDDING_DIM):
        raise ValueError(f"expected ({len(id_array)}, {EMBEDDING_DIM}) vectors, got {matrix.shape}")
    np.save(paths["ids"], id_array)
    np.save(paths["vectors"], matrix)
    has_ann = ann and len(id_array) > 0
    if has_ann:
        from usearch.index import Index

        graph = Index(
            ndim=EMBEDDING_DIM,
            metric="cos",
            dtype="f16",
            connectivity=connectivity,
            expansion_add=expansion_add,
        )
        graph.add(np.arange(len(id_array), dtype=np.uint64), matrix, threads=threads)
        graph.save(str(paths["ann"]))
    else:
        paths["ann"].unlink(missing_ok=True)
    manifest = Manifest(
        name=name,
        build_id=build_id,
        n=len(id_array),
        dim=EMBEDDING_DIM,
        fingerprint=fingerprint(id_array),
        has_ann=has_ann,
        connectivity=connectivity,
        expansion_add=expansion_add,
    )
    _atomic_write_text(paths["manifest"], manifest.to_json())
    return manifest


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
        ann: object | None = None,
        *,
        expansion_search: int = EXPANSION_SEARCH,
        exact_below: int = EXACT_BELOW,
        problem: str | None = None,
    ) -> None:
        self.name = name
        self.ids = ids
        self.matrix = matrix
        self.ann = ann
        self.exact_below = exact_below
        self.problem = problem  # why the ANN index is not used, if it is not
        if ann is not None:
            ann.expansion_search = expansion_search  # type: ignore[attr-defined]

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
        matches = self.ann.search(q, min(len(self), k * OVERFETCH), threads=1)  # type: ignore[attr-defined]
        candidates = np.asarray(matches.keys, dtype=np.int64)
        sims = np.asarray(self.matrix[candidates] @ q, dtype=np.float32)  # exact re-rank
        order = np.lexsort((candidates, -sims))[:k]
        return candidates[order], sims[order]


def open_index(
    directory: Path,
    name: str,
    *,
    expected_fingerprint: str | None,
    fallback: Callable[[], tuple[np.ndarray, np.ndarray]] | None = None,
    expansion_search: int = EXPANSION_SEARCH,
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
        graph = None
        if manifest["has_ann"]:
            from usearch.index import Index

            graph = Index.restore(str(paths["ann"]), view=True)
            if graph is None or len(graph) != len(ids):
                problem = f"{paths['ann'].name} is unreadable or has the wrong size"
        if problem is None:
            return VectorIndex(
                name,
                np.asarray(ids),
                matrix,
                graph,
                expansion_search=expansion_search,
                exact_below=exact_below,
                problem=None if graph is not None else "built without ANN",
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
