"""What a person sees on a materialization: small markdown tables of the top insights and a
plot of weekly quality, read from the marts after dbt has finished (never while it runs:
DuckDB lets one process hold the file for writing). Every query is skipped, not failed, when
its mart is missing, so the graph still loads while marts are being added."""

from __future__ import annotations

import base64
import io
import math

import duckdb
import numpy as np
from dagster import MetadataValue

from engram.query import answers
from engram.query.answers import relations
from engram.render import markdown_table

TOP_N = 5
PLOT_PATTERNS = 5


def _short(text: object, width: int = 60) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= width else text[: width - 1] + "…"


def _markdown(answer: answers.Answer | None, columns: dict[str, str]) -> str | None:
    """An answer's rows as a markdown table of `columns` ({column: header})."""
    if answer is None:
        return None
    frame = answer.frame[list(columns)]
    rows = [[_cell(v) for v in row] for row in frame.itertuples(index=False)]
    return markdown_table(list(columns.values()), rows)


def _cell(value: object) -> object:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def improving_patterns(con: duckdb.DuckDBPyConnection, have: set[str]) -> str | None:
    return _markdown(
        answers.moving_patterns(con, have, TOP_N, "improving"),
        {
            "pattern_id": "pattern",
            "description": "description",
            "n_events": "events",
            "quality_slope_per_week": "quality slope / week",
            "slope_t_stat": "t",
        },
    )


def strongest_file_pairs(con: duckdb.DuckDBPyConnection, have: set[str]) -> str | None:
    return _markdown(
        answers.strongest_file_pairs(con, have, TOP_N),
        {
            "file_a": "file a",
            "file_b": "file b",
            "co_occurrences": "co-occurrences",
            "avg_quality": "avg quality",
            "quality_lift": "quality lift",
        },
    )


def largest_clusters(con: duckdb.DuckDBPyConnection, have: set[str]) -> str | None:
    return _markdown(
        answers.largest_clusters(con, have, TOP_N),
        {"cluster_id": "cluster", "cluster_label": "label", "n_patterns": "patterns"},
    )


def top_alerts(con: duckdb.DuckDBPyConnection, have: set[str]) -> str | None:
    return _markdown(
        answers.top_alerts(con, have, TOP_N),
        {"kind": "kind", "pattern_id": "pattern", "message": "what to do"},
    )


def largest_themes(con: duckdb.DuckDBPyConnection, have: set[str]) -> str | None:
    return _markdown(
        answers.largest_themes(con, have, TOP_N),
        {
            "theme_label": "theme",
            "theme_size": "patterns",
            "n_paraphrase_groups": "approaches",
            "usage_count": "events",
            "success_rate": "success",
            "direction": "trend",
        },
    )


PROJECTS_SHOWN = 50  # projects listed in the per-project table


def projects_table(con: duckdb.DuckDBPyConnection, have: set[str]) -> str | None:
    return _markdown(
        answers.projects_overview(con, have, PROJECTS_SHOWN),
        {
            "project_id": "project",
            "n_events": "events",
            "n_patterns": "patterns",
            "mean_quality": "mean quality",
            "n_files": "files",
            "n_file_pairs": "file pairs",
            "n_cells": "(task kind, pattern) cells",
            "cells_borrowing": "cells borrowing",
            "borrowed_events_per_cell": "borrowed events / cell",
        },
    )


def weekly_quality_plot(con: duckdb.DuckDBPyConnection, have: set[str]) -> str | None:
    """Weekly moving-average quality of the most improving patterns (the most used ones when
    nothing is improving), as a PNG data URI inside markdown."""
    if "marts.pattern_trends" not in have:
        return None
    if "marts.pattern_trend_summary" in have:
        chosen_sql = f"""
            select pattern_id from marts.pattern_trend_summary
            order by (direction = 'improving') desc, quality_slope_per_week desc nulls last,
                     n_events desc, pattern_id
            limit {PLOT_PATTERNS}
        """
    else:
        chosen_sql = f"""
            select pattern_id from marts.pattern_trends group by pattern_id
            order by sum(usage_count) desc, pattern_id limit {PLOT_PATTERNS}
        """
    rows = con.execute(
        f"""
        select t.pattern_id, t.week, coalesce(t.moving_avg_quality, t.avg_quality)
        from marts.pattern_trends as t
        where t.pattern_id in ({chosen_sql})
        order by t.pattern_id, t.week
        """
    ).fetchall()
    if not rows:
        return None
    return "![weekly quality](data:image/png;base64," + _render(rows) + ")"


def _render(rows: list[tuple[str, object, float | None]]) -> str:
    # The object API, not pyplot: no global figure state or GUI backend in a worker.
    from matplotlib.figure import Figure

    series: dict[str, tuple[list[object], list[float]]] = {}
    for pattern_id, week, quality in rows:
        if quality is None:  # a week without use: draw through it, not a gap
            continue
        weeks, values = series.setdefault(pattern_id, ([], []))
        weeks.append(week)
        values.append(quality)
    figure = Figure(figsize=(7, 3.2), dpi=90)
    axes = figure.subplots()
    for pattern_id, (weeks, values) in series.items():
        axes.plot(weeks, values, label=_short(pattern_id, 24), linewidth=1.5)  # type: ignore[arg-type]
    axes.set_ylabel("quality (moving avg)")
    axes.set_title("Weekly quality of the top patterns")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="lower right")
    figure.autofmt_xdate()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def mart_insights(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, MetadataValue]]:
    """Metadata to attach per mart (by model name), plus 'summary' for the serving asset."""
    have = relations(con)
    improving = improving_patterns(con, have)
    pairs = strongest_file_pairs(con, have)
    clusters = largest_clusters(con, have)
    plot = weekly_quality_plot(con, have)
    alerts = top_alerts(con, have)
    themes = largest_themes(con, have)
    projects = projects_table(con, have)
    out: dict[str, dict[str, MetadataValue]] = {}
    if projects is not None:
        out["pattern_project_predictions"] = {"projects": MetadataValue.md(projects)}
    if alerts is not None:
        out["pattern_alerts"] = {"top_alerts": MetadataValue.md(alerts)}
    if themes is not None:
        out["pattern_themes"] = {"largest_themes": MetadataValue.md(themes)}
    if improving is not None:
        out["pattern_trend_summary"] = {"most_improving_patterns": MetadataValue.md(improving)}
    if plot is not None:
        out.setdefault("pattern_trend_summary", {})["weekly_quality_plot"] = MetadataValue.md(plot)
        out["pattern_trends"] = {"weekly_quality_plot": MetadataValue.md(plot)}
    if pairs is not None:
        out["file_cooccurrence"] = {"strongest_file_pairs": MetadataValue.md(pairs)}
    if clusters is not None:
        out["pattern_clusters"] = {"largest_clusters": MetadataValue.md(clusters)}
    sections = [
        ("Most improving patterns", improving),
        ("Strongest file pairs", pairs),
        ("Largest clusters", clusters),
        ("Top alerts", alerts),
        ("Largest themes", themes),
        ("Projects", projects),
        ("Weekly quality of the top patterns", plot),
    ]
    summary = "\n\n".join(f"### {title}\n\n{body}" for title, body in sections if body)
    if summary:
        out["summary"] = {"insights": MetadataValue.md(summary)}
    return out
