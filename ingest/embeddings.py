"""Fill the embedding cache: each distinct text (pattern description or event context)
is embedded once per model variant, keyed by the sha256 of its text and the variant's tag
(`all-MiniLM-L6-v2:onnx-int8`, ...). Switching backend re-embeds under the new tag rather
than mixing vectors; `raw.embedding_runs` records which tag is complete, and the marts
read the newest one.

Work is committed batch by batch, so an interrupted run keeps what it embedded and the
next run only does the rest. Texts are sorted by length so batches pad little.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb
import numpy as np
import pyarrow as pa

from ingest.embedder import EMBEDDING_DIM, Embedder
from ingest.progress import ProgressFactory

TEXTS_SQL = """
    select description_hash as text_hash, description as text from raw.patterns
    union all
    select context_hash, context from raw.usage_events where context_hash is not null
"""


@dataclass(frozen=True)
class EmbedStats:
    texts_referenced: int  # distinct texts the warehouse refers to
    texts_embedded: int  # computed by the model in this call
    texts_cached: int  # already in raw.embeddings, no model time spent


def embeddings_table(
    hashes: list[str], texts: list[str], vectors: np.ndarray, model: str
) -> pa.Table:
    flat = pa.array(vectors.astype(np.float32, copy=False).reshape(-1), type=pa.float32())
    now = datetime.now(UTC).replace(tzinfo=None)
    return pa.table(
        {
            "text_hash": pa.array(hashes, type=pa.string()),
            "text": pa.array(texts, type=pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(flat, EMBEDDING_DIM),
            "model": pa.array([model] * len(hashes), type=pa.string()),
            "embedded_at": pa.array([now] * len(hashes), type=pa.timestamp("us")),
        }
    )


def _insert_embeddings(
    con: duckdb.DuckDBPyConnection, embedder: Embedder, hashes: list[str], texts: list[str]
) -> None:
    """Embed and insert one batch (autocommit: the cache keeps what is done if killed)."""
    vectors = embedder.encode(texts)
    batch = embeddings_table(hashes, texts, vectors, embedder.tag)
    con.register("_embedding_batch", batch)
    con.execute("insert into raw.embeddings select * from _embedding_batch")
    con.unregister("_embedding_batch")


def embed_new_texts(
    con: duckdb.DuckDBPyConnection,
    embedder: Embedder,
    texts: dict[str, str],
    *,
    batch_texts: int = 1024,
) -> int:
    """Embed those of `texts` (hash -> text) that have no cached vector yet; returns how
    many were embedded.

    The loader calls this per chunk, so memory stays bounded by the chunk whatever the
    number of distinct texts in a file, and a file's texts are cached as it is read (a
    cache entry for a file that is later rolled back is harmless: it is keyed by content).
    The caller must not hold an open transaction: each batch commits on its own."""
    if not texts:
        return 0
    wanted = pa.table(
        {
            "text_hash": pa.array(list(texts), type=pa.string()),
            "text": pa.array(list(texts.values()), type=pa.string()),
        }
    )
    con.register("_texts_wanted", wanted)
    try:
        rows = con.execute(
            """
            select w.text_hash, w.text from _texts_wanted as w
            anti join (select text_hash from raw.embeddings where model = ?) as e
                on e.text_hash = w.text_hash
            order by length(w.text), w.text_hash
            """,
            [embedder.tag],
        ).fetchall()
    finally:
        con.unregister("_texts_wanted")
    for start in range(0, len(rows), batch_texts):
        batch = rows[start : start + batch_texts]
        _insert_embeddings(con, embedder, [r[0] for r in batch], [r[1] for r in batch])
    return len(rows)


def embed_missing(
    con: duckdb.DuckDBPyConnection,
    embedder: Embedder,
    *,
    batch_texts: int = 1024,
    progress: ProgressFactory | None = None,
) -> EmbedStats:
    """Embed every referenced text that has no cached vector under embedder.tag yet, then
    record the pass in raw.embedding_runs (which makes that tag the one the marts read)."""
    con.execute(
        f"""
        create or replace temp table _texts_to_embed as
        with referenced as (
            select text_hash, any_value(text) as text from ({TEXTS_SQL}) group by text_hash
        )
        select r.text_hash, r.text, row_number() over (order by length(r.text), r.text_hash) as n
        from referenced as r
        anti join (select text_hash from raw.embeddings where model = ?) as e
            on e.text_hash = r.text_hash
        """,
        [embedder.tag],
    )
    referenced = con.execute(f"select count(distinct text_hash) from ({TEXTS_SQL})").fetchone()[0]  # type: ignore[index]
    missing = con.execute("select count(*) from _texts_to_embed").fetchone()[0]  # type: ignore[index]
    bar = progress(missing, "embedding texts") if (progress and missing) else None
    done = 0
    while done < missing:
        rows = con.execute(
            "select text_hash, text from _texts_to_embed where n > ? and n <= ? order by n",
            [done, done + batch_texts],
        ).fetchall()
        _insert_embeddings(con, embedder, [row[0] for row in rows], [row[1] for row in rows])
        done += len(rows)
        if bar:
            bar.update(len(rows))
    if bar:
        bar.close()
    con.execute("drop table if exists _texts_to_embed")
    con.execute(
        "insert into raw.embedding_runs values (?, ?, ?, ?)",
        [embedder.tag, referenced, missing, datetime.now(UTC).replace(tzinfo=None)],
    )
    return EmbedStats(referenced, missing, referenced - missing)
