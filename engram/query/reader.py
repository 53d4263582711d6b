"""One read-only view of a warehouse's answers: the connection every question module uses.

A Reader opens the published serving copy (engram.query.serving), never the warehouse while
one exists, so it keeps answering while ingest or dbt write. Its connection is a sandbox
(serving.SANDBOX_CONFIG): read-only, no file or network access, configuration locked, so
SQL from a person or an agent can read the marts and nothing else. It knows which relations exist
(so a question can say "run `engram build`" instead of failing on a missing table), opens
the vector indexes once, and embeds query texts with a per-text cache.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Literal

import duckdb
import numpy as np
import pandas as pd

from engram.query.errors import MissingMart, QueryError, ServingError, check_text
from engram.query.index import SearchMode, VectorIndex, normalize, open_index
from engram.query.serving import (
    connect_reader,
    context_vectors_sql,
    lock_down,
    pattern_vectors_sql,
    read_vectors,
)
from engram.query.udf import QueryEmbedder, register_embed
from ingest.embedder import Embedder, EmbeddingMismatch
from ingest.warehouse import resolve_db_path

IndexName = Literal["patterns", "contexts"]


class Reader:
    """Read-only questions to one warehouse's serving copy (or the warehouse, if none)."""

    def __init__(
        self,
        db: str | Path | None = None,
        *,
        embedder: Embedder | QueryEmbedder | None = None,
        search_mode: SearchMode = "auto",
    ) -> None:
        self.db_path = resolve_db_path(db)
        try:
            self.con, self.copy = connect_reader(self.db_path)
        except ServingError as exc:
            raise QueryError(str(exc)) from exc
        self.search_mode: SearchMode = search_mode
        self.query_embedder = register_embed(self.con, embedder)
        lock_down(self.con)  # from here on the connection can only read its own tables
        self.relations = {
            r[0]
            for r in self.con.execute(
                "select table_schema || '.' || table_name from information_schema.tables "
                "where table_catalog = current_database()"
            ).fetchall()
        }
        self.meta: dict[str, Any] = {}
        if "serving.meta" in self.relations:
            cursor = self.con.execute("select * from serving.meta")
            names = [d[0] for d in cursor.description]
            row = cursor.fetchone()
            self.meta = dict(zip(names, row, strict=True)) if row else {}
        self.embedding_model: str | None = None  # the model:backend tag of the vectors
        if "staging.stg_embedding_model" in self.relations:
            row = self.con.execute("select embedding_model from staging.stg_embedding_model")
            found = row.fetchone()
            self.embedding_model = found[0] if found else None
        self.query_embedder.expect(self.embedding_model)
        self._indexes: dict[str, VectorIndex] = {}
        self.cache: dict[str, Any] = {}  # per-reader memo for question modules

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (removing the UDF first avoids shutdown noise from duckdb)."""
        con = getattr(self, "con", None)
        if con is not None:
            with contextlib.suppress(duckdb.Error):
                con.remove_function("embed")
            con.close()
            self.con = None  # type: ignore[assignment]

    @property
    def source(self) -> str:
        """What is being read: the serving copy's build, or the warehouse itself."""
        if self.copy:
            return f"serving copy {self.copy.build_id} ({self.copy.database})"
        return f"warehouse {self.db_path} (read-only; no serving copy published)"

    def has(self, relation: str) -> bool:
        return relation in self.relations

    def require(self, *relations: str) -> None:
        for relation in relations:
            if relation not in self.relations:
                raise MissingMart(relation)

    def df(self, sql: str, params: list[Any] | dict[str, Any] | None = None) -> pd.DataFrame:
        return self.con.execute(sql, params or []).df()

    def rows(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        return self.con.execute(sql, params or []).fetchall()

    def embed(self, text: str) -> np.ndarray:
        """The text's vector, from a variant comparable with the warehouse's vectors."""
        try:
            return self.query_embedder.encode(check_text(text))
        except EmbeddingMismatch as exc:
            raise QueryError(str(exc)) from None

    def index(self, name: IndexName) -> VectorIndex:
        """The vector index for patterns or contexts, opened once per Reader."""
        if name not in self._indexes:
            sql = pattern_vectors_sql() if name == "patterns" else context_vectors_sql()
            self.require("marts.dim_patterns" if name == "patterns" else "staging.stg_contexts")

            def from_database() -> tuple[np.ndarray, np.ndarray]:
                return read_vectors(self.con, sql)

            if self.copy is None:
                ids, vectors = from_database()
                self._indexes[name] = VectorIndex(name, ids, normalize(vectors), None)
            else:
                self._indexes[name] = open_index(
                    self.copy.directory,
                    name,
                    expected_fingerprint=self.meta.get(f"{name}_fingerprint"),
                    fallback=from_database,
                )
        return self._indexes[name]
