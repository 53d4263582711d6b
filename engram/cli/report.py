"""The demo's answers: what is in the warehouse and what it says (`engram report`).

Every section is a headline answer from engram.query.answers, shown as a text table with
the columns a person reads first. Reads through a Reader, so from the published serving
copy when there is one (never blocked by a writer) and else from the warehouse read-only;
a section whose mart is not built is left out, so the report works on any warehouse state.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

from engram.cli.output import display_types
from engram.query import answers
from engram.query.jsonable import to_jsonable
from engram.query.reader import Reader
from engram.render import format_table


@dataclass(frozen=True)
class Section:
    title: str
    headers: list[str]
    rows: list[tuple[Any, ...]]
    note: str | None = None

    def render(self) -> str:
        body = format_table(self.headers, self.rows)
        note = f"\n{self.note}" if self.note else ""
        return f"== {self.title}\n{body}{note}"


# (answer, {column: header}) in reading order; None: every column, headers as named.
SECTIONS: tuple[tuple[answers.AnswerFn, dict[str, str] | None], ...] = (
    (answers.row_counts, {"relation": "table", "n_rows": "rows"}),
    (
        answers.most_used_patterns,
        {
            "pattern_id": "pattern",
            "usage_count": "uses",
            "success_rate": "success",
            "description": "description",
        },
    ),
    (
        answers.most_similar_pairs,
        {
            "similarity": "similarity",
            "pattern_id": "pattern",
            "similar_pattern_id": "similar pattern",
            "description": "description",
            "similar_description": "similar description",
        },
    ),
    (
        answers.moving_patterns,
        {
            "pattern_id": "pattern",
            "direction": "direction",
            "change_per_year": "change/year",
            "slope_t_stat": "t",
            "n_events": "events",
        },
    ),
    (
        answers.strongest_file_pairs,
        {
            "file_a": "file a",
            "file_b": "file b",
            "co_occurrences": "together",
            "avg_quality": "avg quality",
            "quality_lift": "lift",
            "change_per_year": "change/year",
        },
    ),
    (
        answers.largest_clusters,
        {"cluster_id": "cluster", "n_patterns": "size", "cluster_label": "label"},
    ),
    (
        answers.largest_themes,
        {
            "theme_id": "theme",
            "theme_size": "size",
            "n_paraphrase_groups": "approaches",
            "usage_count": "events",
            "success_rate": "success",
            "direction": "trend",
            "theme_label": "label",
        },
    ),
    (
        answers.top_alerts,
        {
            "kind": "kind",
            "pattern_id": "pattern",
            "related_pattern_id": "use",
            "evidence": "evidence",
        },
    ),
    (
        answers.kinds_of_task,
        {
            "context_cluster_id": "cluster",
            "n_contexts": "contexts",
            "n_events": "events",
            "label": "label",
        },
    ),
    (answers.backtest_summary, None),
)


def section(answer: answers.Answer, columns: dict[str, str] | None, note: str) -> Section:
    frame = display_types(answer.frame if columns is None else answer.frame[list(columns)])
    headers = list(frame.columns) if columns is None else list(columns.values())
    rows = [tuple(_plain(v) for v in row) for row in frame.itertuples(index=False)]
    return Section(answer.title, headers, rows, note)


def _plain(value: Any) -> Any:
    """Python scalars for format_table: numpy to Python, NaN/NaT to None, datetimes kept."""
    if value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, date):
        return value
    return to_jsonable(value)


def build_report(db_path: Path, top: int = 10) -> list[Section]:
    """All sections, in reading order (raises QueryError if nothing can be read)."""
    with Reader(db_path) as reader:
        out = []
        for answer_fn, columns in SECTIONS:
            answer = answer_fn(reader.con, reader.relations, top)
            if answer is None:
                continue
            note = reader.source if answer_fn is answers.row_counts else f"source: {answer.source}"
            out.append(section(answer, columns, note))
    return out
