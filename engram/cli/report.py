"""The demo's answers: what is in the warehouse and what it says.

Reads through Memory, so from the published serving copy when there is one (never
blocked by a writer) and else from the warehouse read-only. Each section reads a mart
when the build made it and is left out (or says so) when it is missing, so the report
works on any warehouse state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engram.memory import Memory
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


def _rows(memory: Memory, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    return memory.con.execute(sql, params or []).fetchall()


def row_counts(memory: Memory, top: int) -> Section | None:
    if memory.has("serving.row_counts"):
        rows = _rows(memory, "select relation, n_rows from serving.row_counts")
        return Section("What is in the warehouse", ["table", "rows"], rows, memory.source)
    if not memory.has("raw.patterns"):
        return None
    rows = _rows(
        memory,
        """
        select 'patterns', count(*) from raw.patterns
        union all select 'usage events', count(*) from raw.usage_events
        union all select 'distinct task texts', count(distinct context_hash) from raw.usage_events
        union all select 'embedded texts (cache)', count(*) from raw.embeddings
        union all select 'rejected records', count(*) from raw.rejected_records
        union all select 'ingest runs', count(*) from raw.ingest_runs
        """,
    )
    return Section("What is in the warehouse", ["table", "rows"], rows, memory.source)


def most_used(memory: Memory, top: int) -> Section | None:
    title = "Most-used patterns and their success rate (mean outcome quality)"
    headers = ["pattern", "uses", "success", "description"]
    if memory.has("marts.dim_patterns"):
        sql = """
            select pattern_id, usage_count, success_rate, description from marts.dim_patterns
            order by usage_count desc, pattern_id limit ?
        """
        return Section(title, headers, _rows(memory, sql, [top]), "source: marts.dim_patterns")
    if not memory.has("raw.usage_events"):
        return Section(title, headers, [], "marts.dim_patterns is not built: run `engram build`")
    sql = """
        select e.pattern_id, count(*) as uses, avg(e.outcome_quality) as success_rate,
               any_value(p.description) as description
        from raw.usage_events as e left join raw.patterns as p using (pattern_id)
        group by e.pattern_id order by uses desc, e.pattern_id limit ?
    """
    return Section(title, headers, _rows(memory, sql, [top]), "source: raw tables")


def most_similar(memory: Memory, top: int) -> Section | None:
    title = "Most similar pattern pairs (cosine of description embeddings)"
    headers = ["similarity", "pattern", "similar pattern", "description", "similar description"]
    if memory.has("marts.pattern_similar_pairs") and memory.has("marts.dim_patterns"):
        sql = """
            select s.similarity, s.pattern_id, s.similar_pattern_id, a.description, b.description
            from marts.pattern_similar_pairs as s
            join marts.dim_patterns as a on a.pattern_id = s.pattern_id
            join marts.dim_patterns as b on b.pattern_id = s.similar_pattern_id
            where s.pattern_id < s.similar_pattern_id
            order by s.similarity desc, s.pattern_id, s.similar_pattern_id limit ?
        """
        rows = _rows(memory, sql, [top])
        return Section(title, headers, rows, "source: marts.pattern_similar_pairs")
    if not memory.has("staging.stg_patterns"):
        return Section(title, headers, [], "run `engram build` to compute similar pairs")
    count = _rows(memory, "select count(*) from staging.stg_patterns")[0][0]
    if count > 20_000:
        return Section(title, headers, [], "run `engram build` to compute similar pairs")
    sql = """
        with p as (
            select pattern_id, description, embedding from staging.stg_patterns
            where embedding is not null
        )
        select array_cosine_similarity(a.embedding, b.embedding) as similarity,
               a.pattern_id, b.pattern_id, a.description, b.description
        from p as a join p as b on a.pattern_id < b.pattern_id
        order by similarity desc, a.pattern_id, b.pattern_id limit ?
    """
    rows = _rows(memory, sql, [top])
    return Section(title, headers, rows, "source: exact all-pairs over staging.stg_patterns")


def _mart(
    relation: str, title: str, headers: list[str], sql: str
) -> Callable[[Memory, int], Section | None]:
    def section(memory: Memory, top: int) -> Section | None:
        if not memory.has(relation):
            return None
        return Section(title, headers, _rows(memory, sql, [top]), f"source: {relation}")

    return section


def backtest(memory: Memory, top: int) -> Section | None:
    if not memory.has("marts.prediction_backtest_summary"):
        return None
    cursor = memory.con.execute("select * from marts.prediction_backtest_summary")
    headers = [d[0] for d in cursor.description]
    return Section(
        "Do predictions work? Walk-forward backtest (lower Brier is better)",
        headers,
        cursor.fetchall(),
        "source: marts.prediction_backtest_summary",
    )


SECTIONS: list[Callable[[Memory, int], Section | None]] = [
    row_counts,
    most_used,
    most_similar,
    _mart(
        "marts.pattern_trend_summary",
        "Patterns getting better or worse (quality change per year = weekly slope x 52)",
        ["pattern", "direction", "change/year", "t", "events"],
        """
        select pattern_id, direction, quality_slope_per_week * 52, slope_t_stat, n_events
        from marts.pattern_trend_summary
        where direction in ('improving', 'declining')
        order by abs(quality_slope_per_week) desc, pattern_id limit ?
        """,
    ),
    _mart(
        "marts.file_cooccurrence",
        "Files that travel together (and how those combinations fare)",
        ["file a", "file b", "together", "avg quality", "lift", "change/year"],
        """
        select file_a, file_b, co_occurrences, avg_quality, quality_lift,
               quality_slope_per_week * 52
        from marts.file_cooccurrence
        order by co_occurrences desc, file_a, file_b limit ?
        """,
    ),
    _mart(
        "marts.pattern_clusters",
        "Largest clusters of patterns by meaning",
        ["cluster", "size", "label"],
        """
        select cluster_id, any_value(cluster_size) as size, any_value(cluster_label) as label
        from marts.pattern_clusters
        group by cluster_id order by size desc, cluster_id limit ?
        """,
    ),
    _mart(
        "marts.context_clusters",
        "Kinds of task (clusters of task texts)",
        ["cluster", "contexts", "events", "label"],
        """
        select context_cluster_id, n_contexts, n_events, label from marts.context_clusters
        order by n_events desc, context_cluster_id limit ?
        """,
    ),
    backtest,
]


def build_report(db_path: Path, top: int = 10) -> list[Section]:
    """All sections, in reading order (raises QueryError if nothing can be read)."""
    with Memory(db_path) as memory:
        sections = [section(memory, top) for section in SECTIONS]
    return [s for s in sections if s is not None]
