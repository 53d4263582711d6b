"""Synthetic clustered embeddings: a stand-in for the model when the benchmark must scale.

Embedding every distinct text with the real model on a small CPU takes longer than the rest
of the pipeline, and the later stages (dbt build, queries) only need vectors with realistic
cluster structure, not the model's exact values. `fill_synthetic` writes, for every text the
warehouse refers to that has no cached vector, a unit vector drawn as

    topic centre   t  = random unit vector per generator topic
    group centre   g  = unit(t + GROUP_SPREAD * r)   r: random unit; one group per pattern
                                                     family or per task template
    text vector    v  = unit(g + TEXT_SPREAD * n)    n: random unit, seeded by the text hash

so paraphrases of one family sit near cosine 0.8 to each other and well below that across
families, as the real model places them. Every draw is seeded by a sha256 (of the group key
or of the text), so the vectors do not depend on batch order or size. Rows are stored in
raw.embeddings with model = SYNTHETIC_MODEL, so they can never be mistaken for real ones;
the benchmark table says "synthetic vectors" whenever this mode was used.

Because every vector carries its model:backend tag and queries refuse to compare variants
(ingest/embedder.py), the benchmark's closing embed pass and its queries use
SyntheticTagEmbedder: the real model for query texts, labelled with the synthetic tag. That
says out loud what the benchmark does (time real query embedding against stand-in vectors)
and keeps the marts reading the synthetic vectors instead of re-embedding every text.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import duckdb
import numpy as np

from engram.generate import TOPICS
from ingest.embedder import EMBEDDING_DIM, Embedder
from ingest.embeddings import embeddings_table

SYNTHETIC_MODEL = "synthetic-clustered-v1"
GROUP_SPREAD = 0.8  # cos(group centre, topic centre) ~ 0.78
TEXT_SPREAD = 0.5  # cos(text, group centre) ~ 0.89; two texts of one group ~ 0.8
BATCH = 50_000

_MISSING_SQL = """
    with referenced as (
        select description_hash as text_hash, any_value(description) as text,
               any_value(metadata->>'family') as group_key
        from raw.patterns group by description_hash
        union all
        select context_hash, any_value(context), null
        from raw.usage_events where context_hash is not null group by context_hash
    ),
    distinct_texts as (
        select text_hash, any_value(text) as text, max(group_key) as group_key
        from referenced group by text_hash
    )
    select d.text_hash, d.text, d.group_key
    from distinct_texts as d
    anti join raw.embeddings as e on e.text_hash = d.text_hash
    order by d.text_hash
"""


@dataclass(frozen=True)
class SyntheticStats:
    texts_filled: int
    seconds: float


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def _seeded_unit(key: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "little")
    return _unit(np.random.default_rng(seed).standard_normal(EMBEDDING_DIM))


def _context_groups() -> dict[str, tuple[str, str]]:
    """Task text -> (topic slug, task template key), for every context the generator writes."""
    groups: dict[str, tuple[str, str]] = {}
    for topic in TOPICS:
        for k, task in enumerate(topic.tasks):
            renderings = [task.replace("{x}", s) for s in topic.slots] if "{x}" in task else [task]
            for text in renderings:
                groups.setdefault(text, (topic.slug, f"{topic.slug}/task{k}"))
    return groups


class ClusteredVectors:
    """Deterministic clustered unit vectors for texts keyed by (topic, group)."""

    def __init__(self) -> None:
        self._contexts = _context_groups()
        self._centres: dict[str, np.ndarray] = {}

    def _centre(self, topic: str, group: str) -> np.ndarray:
        found = self._centres.get(group)
        if found is None:
            base = _seeded_unit(f"topic:{topic}")
            found = _unit(base + GROUP_SPREAD * _seeded_unit(f"group:{group}"))
            self._centres[group] = found
        return found

    def group_of(self, text: str, group_key: str | None) -> tuple[str, str]:
        """(topic, group) of a text: pattern family from metadata, task template for a
        generated context, else the text is a group of its own."""
        if group_key:
            return group_key.split("/", 1)[0], group_key
        if text in self._contexts:
            return self._contexts[text]
        return f"text:{text}", f"text:{text}"

    def vector(self, text_hash: str, text: str, group_key: str | None) -> np.ndarray:
        topic, group = self.group_of(text, group_key)
        noise = _seeded_unit(f"text:{text_hash}")
        return _unit(self._centre(topic, group) + TEXT_SPREAD * noise).astype(np.float32)

    def vectors(self, rows: list[tuple[str, str, str | None]]) -> np.ndarray:
        if not rows:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        return np.stack([self.vector(h, t, g) for h, t, g in rows])


def fill_synthetic(con: duckdb.DuckDBPyConnection) -> SyntheticStats:
    """Give every referenced text without a cached vector a synthetic one (in batches)."""
    import time

    started = time.perf_counter()
    rows = con.execute(_MISSING_SQL).fetchall()
    maker = ClusteredVectors()
    for lo in range(0, len(rows), BATCH):
        batch = rows[lo : lo + BATCH]
        table = embeddings_table(
            [r[0] for r in batch], [r[1] for r in batch], maker.vectors(batch), SYNTHETIC_MODEL
        )
        con.register("_synthetic_batch", table)
        con.execute("insert into raw.embeddings select * from _synthetic_batch")
        con.unregister("_synthetic_batch")
    return SyntheticStats(len(rows), time.perf_counter() - started)


class SyntheticTagEmbedder(Embedder):
    """The default model and backend, tagged SYNTHETIC_MODEL: for the benchmark only (see
    the module docstring). embed_missing with it finds every text cached (fill_synthetic
    wrote them under this tag) and records the pass, so the marts read the synthetic
    vectors; a Memory given it embeds queries with the real model."""

    @property
    def tag(self) -> str:
        return SYNTHETIC_MODEL
