"""The headline answers, each written once: `engram report`, the CLI's overview commands
(`trends`, `files`, `clusters` without an argument), the Python API and the Dagster
metadata all call these functions and only choose how to show the rows.

Each function takes an open read-only connection and the set of relations it holds, and
returns an `Answer` (a title, the rows as a DataFrame, where they came from), or None when
the mart it reads is not built, so every caller works on a partial warehouse.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import duckdb
import pandas as pd


@dataclass(frozen=True)
class Answer:
    title: str
    frame: pd.DataFrame
    source: str


AnswerFn = Callable[[duckdb.DuckDBPyConnection, set[str], int], Answer | None]


def relations(con: duckdb.DuckDBPyConnection) -> set[str]:
    """schema.table of every table and view the connection's database holds."""
    rows = con.execute(
        "select table_schema || '.' || table_name from information_schema.tables "
        "where table_catalog = current_database()"
    ).fetchall()
    return {row[0] for row in rows}


def _frame(con: duckdb.DuckDBPyConnection, sql: str, params: list[object]) -> pd.DataFrame:
    return con.execute(sql, params).df()


def row_counts(con: duckdb.DuckDBPyConnection, have: set[str], top: int) -> Answer | None:
    """What is in the warehouse: raw table sizes (recorded at publish in the serving copy)."""
    title = "What is in the warehouse"
    if "serving.row_counts" in have:
        frame = _frame(con, "select relation, n_rows from serving.row_counts", [])
        return Answer(title, frame, "serving.row_counts")
    if "raw.patterns" not in have:
        return None
    frame = _frame(
        con,
        """
        select 'patterns' as relation, count(*) as n_rows from raw.patterns
        union all select 'usage events', count(*) from raw.usage_events
        union all select 'distinct task texts', count(distinct context_hash) from raw.usage_events
        union all select 'embedded texts (cache)', count(*) from raw.embeddings
        union all select 'rejected records', count(*) from raw.rejected_records
        union all select 'ingest runs', count(*) from raw.ingest_runs
        """,
        [],
    )
    return Answer(title, frame, "raw tables")


def most_used_patterns(con: duckdb.DuckDBPyConnection, have: set[str], top: int) -> Answer | None:
    """The most-used patterns with their success rate (mean outcome quality)."""
    title = "Most-used patterns and their success rate (mean outcome quality)"
    if "marts.dim_patterns" in have:
        sql = """
            select pattern_id, usage_count, success_rate, description from marts.dim_patterns
            order by usage_count desc, pattern_id limit ?
        """
        return Answer(title, _frame(con, sql, [top]), "marts.dim_patterns")
    if "raw.usage_events" not in have:
        return None
    sql = """
        select e.pattern_id, count(*) as usage_count, avg(e.outcome_quality) as success_rate,
               any_value(p.description) as description
        from raw.usage_events as e left join raw.patterns as p using (pattern_id)
        group by e.pattern_id order by usage_count desc, e.pattern_id limit ?
    """
    return Answer(title, _frame(con, sql, [top]), "raw tables (marts not built)")


def most_similar_pairs(con: duckdb.DuckDBPyConnection, have: set[str], top: int) -> Answer | None:
    """The most similar pattern pairs (cosine of the description embeddings)."""
    title = "Most similar pattern pairs (cosine of description embeddings)"
    if {"marts.pattern_similar_pairs", "marts.dim_patterns"} <= have:
        sql = """
            select s.similarity, s.pattern_id, s.similar_pattern_id,
                   a.description, b.description as similar_description
            from marts.pattern_similar_pairs as s
            join marts.dim_patterns as a on a.pattern_id = s.pattern_id
            join marts.dim_patterns as b on b.pattern_id = s.similar_pattern_id
            where s.pattern_id < s.similar_pattern_id
            order by s.similarity desc, s.pattern_id, s.similar_pattern_id limit ?
        """
        return Answer(title, _frame(con, sql, [top]), "marts.pattern_similar_pairs")
    return None


def moving_patterns(
    con: duckdb.DuckDBPyConnection, have: set[str], top: int, direction: str | None = None
) -> Answer | None:
    """Patterns getting better or worse: the steepest significant weekly slopes of quality
    (`direction` 'improving' or 'declining' keeps one side)."""
    if "marts.pattern_trend_summary" not in have:
        return None
    wanted = [direction] if direction else ["improving", "declining"]
    describe = "marts.dim_patterns" in have
    sql = f"""
        select s.pattern_id, s.direction, s.quality_slope_per_week,
               s.quality_slope_per_week * 52 as change_per_year, s.slope_t_stat, s.n_events,
               s.avg_quality, s.first_week, s.last_week,
               {"p.description" if describe else "null::varchar as description"}
        from marts.pattern_trend_summary as s
        {"left join marts.dim_patterns as p using (pattern_id)" if describe else ""}
        where s.direction in (select unnest(?::varchar[]))
        order by abs(s.quality_slope_per_week) desc, s.pattern_id
        limit ?
    """
    title = "Patterns getting better or worse (quality change per year = weekly slope x 52)"
    return Answer(title, _frame(con, sql, [wanted, top]), "marts.pattern_trend_summary")


def strongest_file_pairs(con: duckdb.DuckDBPyConnection, have: set[str], top: int) -> Answer | None:
    """Files that travel together most often, and how those combinations fare."""
    if "marts.file_cooccurrence" not in have:
        return None
    sql = """
        select project_id, file_a, file_b, co_occurrences, avg_quality, quality_lift,
               success_correlation, quality_slope_per_week,
               quality_slope_per_week * 52 as change_per_year, direction,
               first_seen_at, last_seen_at
        from marts.file_cooccurrence
        order by co_occurrences desc, file_a, file_b
        limit ?
    """
    title = "Files that travel together (and how those combinations fare)"
    return Answer(title, _frame(con, sql, [top]), "marts.file_cooccurrence")


def largest_clusters(con: duckdb.DuckDBPyConnection, have: set[str], top: int) -> Answer | None:
    """The largest clusters of patterns by meaning, with their label and mean success."""
    if "marts.pattern_clusters" not in have:
        return None
    success = "null::double as success_rate, null::hugeint as usage_count"
    join = ""
    if "marts.dim_patterns" in have:
        success = (
            "sum(p.success_rate * p.usage_count) / nullif(sum(p.usage_count), 0) "
            "as success_rate, sum(p.usage_count) as usage_count"
        )
        join = "left join marts.dim_patterns as p using (pattern_id)"
    sql = f"""
        select c.cluster_id, any_value(c.cluster_label) as cluster_label,
               count(*) as n_patterns, {success}
        from marts.pattern_clusters as c {join}
        group by c.cluster_id order by n_patterns desc, c.cluster_id limit ?
    """
    return Answer(
        "Largest clusters of patterns by meaning", _frame(con, sql, [top]), "marts.pattern_clusters"
    )


def largest_themes(con: duckdb.DuckDBPyConnection, have: set[str], top: int) -> Answer | None:
    """The most-used themes (kinds of problem), with their approaches, success and trend."""
    if "marts.pattern_themes" not in have:
        return None
    sql = """
        select theme_id, theme_label, theme_size, n_paraphrase_groups, usage_count,
               success_rate, quality_slope_per_week, direction
        from marts.pattern_themes
        order by usage_count desc, theme_size desc, theme_id limit ?
    """
    return Answer(
        "Themes: kinds of problem and how their approaches fare",
        _frame(con, sql, [top]),
        "marts.pattern_themes",
    )


ALERT_KINDS = ("declining", "near_duplicate", "stale", "rising", "unproven")


def top_alerts(
    con: duckdb.DuckDBPyConnection, have: set[str], top: int, kind: str | None = None
) -> Answer | None:
    """What to do about the pattern library: declining patterns (with a replacement),
    near-duplicates (which to keep), stale, rising and unproven ones (recommended first
    often, rarely used); most urgent kind first, the
    strongest finding of each kind first (`kind` keeps one kind)."""
    if "marts.pattern_alerts" not in have:
        return None
    kinds = [kind] if kind else list(ALERT_KINDS)
    # pattern_alerts is a view that words its findings at read time: the top rows are
    # picked first without the words, then only theirs are read (ordering the whole view
    # wrote the sentences of every finding, 1.39M at 1M patterns, for 20 rows)
    ranking = "order by priority, score desc nulls last, pattern_id"
    keys = con.execute(
        f"""
        select kind, pattern_id from marts.pattern_alerts
        where kind in (select unnest(?::varchar[])) {ranking} limit ?
        """,
        [kinds, top],
    ).fetchall()
    # one parameter per id: DuckDB pushes `in (?, ...)` into the findings' scan, not a
    # list unnested in a subquery (35 against 230 ms at 1M patterns)
    ids = [pattern_id for _, pattern_id in keys]
    sql = f"""
        select kind, pattern_id, related_pattern_id, message, evidence, theme_id, theme_label,
               score, alert_id
        from marts.pattern_alerts
        where pattern_id in ({", ".join("?" * len(ids)) or "null"})
            and kind || ':' || pattern_id in (select unnest(?::varchar[]))
        {ranking}
    """
    picked = [f"{found_kind}:{pattern_id}" for found_kind, pattern_id in keys]
    return Answer(
        "Alerts: what to do about the pattern library",
        _frame(con, sql, [*ids, picked]),
        "marts.pattern_alerts",
    )


def kinds_of_task(con: duckdb.DuckDBPyConnection, have: set[str], top: int) -> Answer | None:
    """The clusters of task texts with the most events."""
    if "marts.context_clusters" not in have:
        return None
    sql = """
        select context_cluster_id, n_contexts, n_events, label from marts.context_clusters
        order by n_events desc, context_cluster_id limit ?
    """
    return Answer(
        "Kinds of task (clusters of task texts)", _frame(con, sql, [top]), "marts.context_clusters"
    )


def backtest_summary(con: duckdb.DuckDBPyConnection, have: set[str], top: int) -> Answer | None:
    """Do predictions work? The walk-forward backtest against its baselines."""
    if "marts.prediction_backtest_summary" not in have:
        return None
    frame = _frame(con, "select * from marts.prediction_backtest_summary", [])
    return Answer(
        "Do predictions work? Walk-forward backtest (lower Brier is better)",
        frame,
        "marts.prediction_backtest_summary",
    )


HEADLINES: tuple[AnswerFn, ...] = (
    row_counts,
    most_used_patterns,
    most_similar_pairs,
    moving_patterns,
    strongest_file_pairs,
    largest_clusters,
    largest_themes,
    top_alerts,
    kinds_of_task,
    backtest_summary,
)


def projects_overview(con: duckdb.DuckDBPyConnection, have: set[str], top: int) -> Answer | None:
    """Each project's memory: its events, patterns and files, and how much of its success
    estimates lean on other projects (marts.pattern_project_predictions)."""
    if "marts.pattern_project_predictions" not in have:
        return None
    files = (
        "(select project_id, count(*) as n_files from marts.file_graph_nodes group by 1)"
        if "marts.file_graph_nodes" in have
        else "(select null::varchar as project_id, null::bigint as n_files)"
    )
    pairs = (
        "(select project_id, count(*) as n_file_pairs from marts.file_cooccurrence group by 1)"
        if "marts.file_cooccurrence" in have
        else "(select null::varchar as project_id, null::bigint as n_file_pairs)"
    )
    sql = f"""
        with per_project as (
            select
                project_id,
                sum(n_events)::bigint as n_events,
                count(distinct pattern_id) as n_patterns,
                sum(n_events * mean_quality) / sum(n_events) as mean_quality,
                count(*) as n_cells,
                count(*) filter (where other_n_events > 0) as cells_borrowing,
                sum(other_n_events * cell_share_weight) filter (where other_n_events > 0)
                    / nullif(count(*) filter (where other_n_events > 0), 0)
                    as borrowed_events_per_cell
            from marts.pattern_project_predictions
            group by project_id
        )
        select per_project.project_id, n_events, n_patterns, mean_quality,
               coalesce(f.n_files, 0) as n_files, coalesce(p.n_file_pairs, 0) as n_file_pairs,
               n_cells, cells_borrowing, borrowed_events_per_cell
        from per_project
        left join {files} as f on f.project_id = per_project.project_id
        left join {pairs} as p on p.project_id = per_project.project_id
        order by n_events desc, per_project.project_id
        limit ?
    """
    title = "Projects: each one's memory, and how much it borrows from the others"
    return Answer(title, _frame(con, sql, [top]), "marts.pattern_project_predictions")
