"""Read-your-writes: what agents recorded in the journal that the marts do not hold yet.

A pattern recorded with `engram record` / MCP must be findable at once, not after the next
build. The overlay reads the journal lines past the offsets the serving copy was built
from (serving.journal_offsets), keeps them in memory, and embeds each new description once
(the seed's hot-pattern cache: vectors are kept by text hash across refreshes and builds).
`similar` and `recommend` merge it with the built answers; outcomes recorded since the
last build add to a pattern's counts as `pending_*` columns, marked not yet built.

Refreshing costs one stat per journal segment and reading only the bytes appended since
the last refresh, so it runs before every question.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engram.query import similar as similar_q
from engram.query.errors import check_k
from engram.query.reader import Reader
from ingest.contract import Rejected, validate_event, validate_pattern
from ingest.embedder import EMBEDDING_DIM, text_hash
from ingest.journal import decode_entry, read_new_lines, segments, validate_recommendation


@dataclass
class PendingPattern:
    pattern_id: str
    description: str
    pattern_type: str | None
    metadata: str | None
    segment: str
    end_offset: int


@dataclass
class PendingOutcome:
    event_id: str
    pattern_id: str
    quality: float
    context: str | None
    recommendation_id: str | None
    segment: str
    end_offset: int


@dataclass
class _Cursor:
    offset: int = 0
    line: int = 0


@dataclass
class Overlay:
    """Journal entries not yet in the marts, for one warehouse; keep one per process."""

    db_path: Path
    patterns: dict[str, PendingPattern] = field(default_factory=dict)
    outcomes: list[PendingOutcome] = field(default_factory=list)
    vectors: dict[str, np.ndarray] = field(default_factory=dict)  # text hash -> unit vector
    _cursors: dict[str, _Cursor] = field(default_factory=dict)
    _built: dict[str, int] = field(default_factory=dict)

    def refresh(self, built: dict[str, int]) -> None:
        """Catch up with the journal; `built` maps segment name -> byte offset the marts
        hold (entries before it are dropped: the build has them)."""
        if built != self._built:
            self._built = dict(built)
            self.patterns = {
                k: p for k, p in self.patterns.items() if p.end_offset > built.get(p.segment, 0)
            }
            self.outcomes = [o for o in self.outcomes if o.end_offset > built.get(o.segment, 0)]
        for path in segments(self.db_path):
            cursor = self._cursors.setdefault(path.name, _Cursor())
            start = max(cursor.offset, built.get(path.name, 0))
            try:
                size = path.stat().st_size
            except OSError:
                continue
            if size <= start:
                continue
            for line in read_new_lines(path, start, cursor.line + 1):
                cursor.offset, cursor.line = line.end_offset, line.line_number
                self._take(path.name, line.text, line.end_offset)

    def _take(self, segment: str, text: str, end_offset: int) -> None:
        """One journal line into the overlay; lines the intake would quarantine are skipped
        here too (the intake reports them)."""
        try:
            kind, record = decode_entry(text)
            if kind == "pattern":
                row = validate_pattern(record)
                self.patterns[row.pattern_id] = PendingPattern(
                    row.pattern_id,
                    row.description,
                    row.pattern_type,
                    row.metadata,
                    segment,
                    end_offset,
                )
            elif kind == "event":
                event = validate_event(record)
                rec_id = record.get("recommendation_id")
                self.outcomes.append(
                    PendingOutcome(
                        event.event_id,
                        event.pattern_id,
                        event.outcome_quality,
                        event.context,
                        rec_id if isinstance(rec_id, str) else None,
                        segment,
                        end_offset,
                    )
                )
            else:
                validate_recommendation(record)
        except Rejected:
            return

    def pattern_matrix(self, encode: Any) -> tuple[list[str], np.ndarray]:
        """(ids, unit vectors) of the pending patterns; each description is embedded once,
        in one batch for all new ones."""
        ids = list(self.patterns)
        missing = [
            self.patterns[i].description
            for i in ids
            if text_hash(self.patterns[i].description) not in self.vectors
        ]
        if missing:
            unique = list(dict.fromkeys(missing))
            for text, vector in zip(unique, encode(unique), strict=True):
                self.vectors[text_hash(text)] = np.asarray(vector, dtype=np.float32)
        if not ids:
            return ids, np.zeros((0, EMBEDDING_DIM), np.float32)
        matrix = np.stack([self.vectors[text_hash(self.patterns[i].description)] for i in ids])
        return ids, matrix

    def pending_counts(self) -> pd.DataFrame:
        """Per pattern: outcomes recorded since the build (count, summed quality)."""
        if not self.outcomes:
            return pd.DataFrame(  # typed: merging on an untyped (float64) empty key fails
                {
                    "pattern_id": pd.Series([], dtype=str),
                    "pending_outcomes": pd.Series([], dtype=np.int64),
                    "pending_quality_sum": pd.Series([], dtype=np.float64),
                }
            )
        frame = pd.DataFrame(
            {
                "pattern_id": [o.pattern_id for o in self.outcomes],
                "quality": [o.quality for o in self.outcomes],
                "event_id": [o.event_id for o in self.outcomes],
            }
        ).drop_duplicates("event_id")  # events are facts: the first line of an id wins
        grouped = frame.groupby("pattern_id")["quality"].agg(["count", "sum"]).reset_index()
        return grouped.rename(columns={"count": "pending_outcomes", "sum": "pending_quality_sum"})


def with_pending(frame: pd.DataFrame, overlay: Overlay) -> pd.DataFrame:
    """`frame` (rows with pattern_id) plus pending_outcomes / pending_success_rate: the
    outcomes recorded since the last build, not yet in usage_count / success_rate."""
    counts = overlay.pending_counts()
    merged = frame.merge(counts, on="pattern_id", how="left")
    merged["pending_outcomes"] = merged["pending_outcomes"].fillna(0).astype(int)
    merged["pending_success_rate"] = merged["pending_quality_sum"] / merged[
        "pending_outcomes"
    ].where(merged["pending_outcomes"] > 0)
    return merged.drop(columns=["pending_quality_sum"])


def built_offsets(reader: Reader) -> dict[str, int]:
    """Segment -> byte offset the marts being read were built from: the serving copy's
    serving.journal_offsets, or (no copy published) the warehouse's raw.journal_offsets."""
    for table in ("serving.journal_offsets", "raw.journal_offsets"):
        if reader.has(table):
            return {
                str(name): int(offset)
                for name, offset in reader.rows(f"select journal_file, byte_offset from {table}")
            }
    return {}


def find_similar(reader: Reader, overlay: Overlay, text: str, k: int = 10) -> pd.DataFrame:
    """similar.find_similar over the marts, merged with the patterns recorded since the
    build (exact cosine; `built` False), best first; every row gets pending_* counts."""
    k = check_k(k)
    query = reader.embed(text)
    overlay.refresh(built_offsets(reader))
    frame = similar_q.find_similar(reader, text, k + len(overlay.patterns))
    frame = frame[~frame["pattern_id"].isin(list(overlay.patterns))]  # re-described since
    frame = frame.assign(built=True)
    if overlay.patterns:
        ids, matrix = overlay.pattern_matrix(reader.query_embedder.embedder.encode)
        similarity = matrix @ query
        pending = pd.DataFrame(
            {
                "pattern_id": ids,
                "description": [overlay.patterns[i].description for i in ids],
                "similarity": similarity.astype(float),
                "success_rate": np.nan,
                "usage_count": 0,
                "pattern_type": [overlay.patterns[i].pattern_type for i in ids],
                "built": False,
            }
        )
        frame = pd.concat([frame, pending], ignore_index=True)
    frame = frame.sort_values("similarity", ascending=False, kind="stable").head(k)
    return with_pending(frame.reset_index(drop=True), overlay)
