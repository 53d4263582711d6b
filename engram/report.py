"""The demo's answers: what is in the warehouse and what it says, read-only.

Each section reads a mart when the build made it, and says so when it is missing,
so the report works on any warehouse state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from engram.tables import format_table


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


def _relations(con: duckdb.DuckDBPyConnection) -> set[str]:
    rows = con.execute(
        "select table_schema || '.' || table_name from information_schema.tables"
    ).fetchall()
    return {r[0] for r in rows}


def row_counts(con: duckdb.DuckDBPyConnection) -> Section:
    rows = con.execute(
        """
        select 'patterns', count(*) from raw.patterns
        union all select 'usage events', count(*) from raw.usage_events
        union all select 'distinct task texts', count(distinct context_hash) from raw.usage_events
        union all select 'embedded texts (cache)', count(*) from raw.embeddings
        union all select 'rejected records', count(*) from raw.rejected_records
        union all select 'ingest runs', count(*) from raw.ingest_runs
        """
    ).fetchall()
    return Section("What is in the warehouse", ["table", "rows"], rows)


def most_used(con: duckdb.DuckDBPyConnection, top: int) -> Section:
    rows = con.execute(
        """
        select e.pattern_id, count(*) as uses, avg(e.outcome_quality) as success_rate,
               any_value(p.description) as description
        from raw.usage_events as e
        left join raw.patterns as p using (pattern_id)
        group by e.pattern_id
        order by uses desc, e.pattern_id
        limit ?
        """,
        [top],
    ).fetchall()
    return Section(
        "Most-used patterns and their success rate (mean outcome quality)",
        ["pattern", "uses", "success", "description"],
        rows,
    )


def most_similar(con: duckdb.DuckDBPyConnection, top: int, relations: set[str]) -> Section:
    title = "Most similar pattern pairs (cosine of description embeddings)"
    headers = ["similarity", "pattern", "similar pattern", "description", "similar description"]
    if "marts.pattern_similar_pairs" in relations:
        rows = con.execute(
            """
            select s.similarity, s.pattern_id, s.similar_pattern_id,
                   a.description, b.description
            from marts.pattern_similar_pairs as s
            join raw.patterns as a on a.pattern_id = s.pattern_id
            join raw.patterns as b on b.pattern_id = s.similar_pattern_id
            where s.pattern_id < s.similar_pattern_id
            order by s.similarity desc, s.pattern_id, s.similar_pattern_id
            limit ?
            """,
            [top],
        ).fetchall()
        return Section(title, headers, rows, "source: marts.pattern_similar_pairs")
    count = con.execute("select count(*) from raw.patterns").fetchone()[0]  # type: ignore[index]
    if count > 20_000:
        return Section(title, headers, [], "run `engram build` to compute similar pairs")
    rows = con.execute(
        """
        with p as (
            select pattern_id, description, embedding from staging.stg_patterns
            where embedding is not null
        )
        select array_cosine_similarity(a.embedding, b.embedding) as similarity,
               a.pattern_id, b.pattern_id, a.description, b.description
        from p as a join p as b on a.pattern_id < b.pattern_id
        order by similarity desc, a.pattern_id, b.pattern_id
        limit ?
        """,
        [top],
    ).fetchall()
    return Section(title, headers, rows, "source: exact all-pairs over staging.stg_patterns")


def optional_mart(
    con: duckdb.DuckDBPyConnection,
    relations: set[str],
    relation: str,
    title: str,
    headers: list[str],
    sql: str,
    top: int,
) -> Section | None:
    if relation not in relations:
        return None
    return Section(title, headers, con.execute(sql, [top]).fetchall(), f"source: {relation}")


MART_SECTIONS: list[tuple[str, str, list[str], str]] = [
    (
        "marts.pattern_trend_summary",
        "Patterns getting better or worse (slope of quality per week)",
        ["pattern", "direction", "slope/week", "events"],
        """
        select pattern_id, direction, quality_slope_per_week, n_events
        from marts.pattern_trend_summary
        where direction in ('improving', 'declining')
        order by abs(quality_slope_per_week) desc, pattern_id limit ?
        """,
    ),
    (
        "marts.file_cooccurrence",
        "Files that travel together (and how those combinations fare)",
        ["file a", "file b", "together", "avg quality", "lift", "slope/week"],
        """
        select file_a, file_b, co_occurrences, avg_quality, quality_lift,
               quality_slope_per_week
        from marts.file_cooccurrence
        order by co_occurrences desc, file_a, file_b limit ?
        """,
    ),
    (
        "marts.pattern_clusters",
        "Largest clusters of patterns by meaning",
        ["cluster", "size", "label"],
        """
        select cluster_id, any_value(cluster_size) as size, any_value(cluster_label) as label
        from marts.pattern_clusters
        group by cluster_id order by size desc, cluster_id limit ?
        """,
    ),
]


def build_report(db_path: Path, top: int = 10) -> list[Section]:
    """All sections, in reading order."""
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        relations = _relations(con)
        sections: list[Section] = [
            row_counts(con),
            most_used(con, top),
            most_similar(con, top, relations),
        ]
        for relation, title, headers, sql in MART_SECTIONS:
            section = optional_mart(con, relations, relation, title, headers, sql, top)
            if section:
                sections.append(section)
        sections.extend(_extra_sections(con, relations))
        return sections
    finally:
        con.close()


def _backtest(con: duckdb.DuckDBPyConnection, relations: set[str]) -> Section | None:
    if "marts.prediction_backtest_summary" not in relations:
        return None
    cursor = con.execute("select * from marts.prediction_backtest_summary")
    headers = [d[0] for d in cursor.description]
    return Section(
        "Do predictions work? Walk-forward backtest (lower Brier is better)",
        headers,
        cursor.fetchall(),
        "source: marts.prediction_backtest_summary",
    )


_EXTRA: list[Callable[[duckdb.DuckDBPyConnection, set[str]], Section | None]] = [_backtest]


def _extra_sections(con: duckdb.DuckDBPyConnection, relations: set[str]) -> list[Section]:
    return [s for s in (f(con, relations) for f in _EXTRA) if s is not None]
