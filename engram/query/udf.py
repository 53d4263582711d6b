"""`embed('text')` inside DuckDB SQL: search by meaning from any connection.

    import duckdb
    from engram.query.udf import register_embed
    con = duckdb.connect("warehouse/engram.serving/build-.../engram_serving.duckdb", read_only=True)
    register_embed(con)
    con.sql("select pattern_id, description from marts.dim_patterns "
            "order by array_cosine_similarity(embedding, embed('flaky test')) desc limit 5")

The model (ingest.embedder.Embedder, all-MiniLM-L6-v2) loads on the first call, and
query vectors are cached per text, so a constant embed('...') costs one model call.
"""

from __future__ import annotations

from functools import lru_cache

import duckdb
import numpy as np

from ingest.embedder import EMBEDDING_DIM, Embedder, backend_for, check_compatible

EMBED_TYPE = f"FLOAT[{EMBEDDING_DIM}]"
_shared: dict[str, Embedder] = {}


def shared_embedder(backend: str | None = None) -> Embedder:
    """One model per backend per process, loaded lazily: queries that never embed never
    pay for it. backend None means the machine's default (ingest.embedder.pick_backend)."""
    key = backend or ""
    if key not in _shared:
        _shared[key] = Embedder(backend=backend)
    return _shared[key]


class QueryEmbedder:
    """Unit query vectors with an LRU cache keyed by the text.

    With stored_tag (the warehouse's embedding variant, set by the Reader) the embedder is
    one whose vectors are comparable with the stored ones: a given embedder is checked,
    else one is picked (ingest.embedder.backend_for). A mismatch raises
    EmbeddingMismatch on the first encode, so SQL that never calls embed() still runs.
    """

    def __init__(self, embedder: Embedder | None = None, cache_size: int = 1024) -> None:
        self._embedder = embedder
        self.stored_tag: str | None = None
        self.encode = lru_cache(maxsize=cache_size)(self._encode)

    def expect(self, stored_tag: str | None) -> None:
        """Queries must match vectors stored under stored_tag (None: nothing to match)."""
        self.stored_tag = stored_tag

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            backend = backend_for(self.stored_tag) if self.stored_tag else None
            self._embedder = shared_embedder(backend)
        elif self.stored_tag:
            check_compatible(self.stored_tag, self._embedder.tag, "the embedder passed in")
        return self._embedder

    def _encode(self, text: str) -> np.ndarray:
        vector = self.embedder.encode([text])[0]
        vector.setflags(write=False)
        return vector


def register_embed(
    con: duckdb.DuckDBPyConnection,
    embedder: Embedder | QueryEmbedder | None = None,
    name: str = "embed",
) -> QueryEmbedder:
    """Register `name(text VARCHAR) -> FLOAT[384]` on con; NULL text gives NULL."""
    query_embedder = embedder if isinstance(embedder, QueryEmbedder) else QueryEmbedder(embedder)

    def embed(text: str) -> list[float]:
        return query_embedder.encode(text).tolist()

    con.create_function(name, embed, ["VARCHAR"], EMBED_TYPE)
    return query_embedder
