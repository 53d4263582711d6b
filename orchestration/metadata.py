"""What a person sees on a materialization: small markdown tables of the top insights and a
plot of weekly quality, read from the marts after dbt has finished (never while it runs:
DuckDB lets one process hold the file for writing). Every query is skipped, not failed, when
its mart is missing, so the graph still loads while marts are being added."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import duckdb
from dagster import MetadataValue

TOP_N = 5
PLOT_PATTERNS = 5


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-style table; pipes in values are escaped so a path can't break a row."""

    def cell(value: object) -> str:
        if isinstance(value, float):
            value = f"{value:.3f}"
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def relations(con: duckdb.DuckDBPyConnection) -> set[str]:
    rows = con.execute(
        "select table_schema || '.' || table_name from information_schema.tables"
    ).fetchall()
    return {row[0] for row in rows}


def _short(text: object, width: int = 60) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= width else text[: width - 1] + "…"


def improving_patterns(con: duckdb.DuckDBPyConnection, have: set[str]) -> str | None:
    if "marts.pattern_trend_summary" not in have:
        return None
    describe = "marts.dim_patterns" in have
    rows = con.execute(
        f"""
        select s.pattern_id, {"p.description" if describe else "null"}, s.n_events,
               s.quality_slope_per_week, s.slope_t_stat
        from marts.pattern_trend_summary as s
        {"left join marts.dim_patterns as p using (pattern_id)" if describe else ""}
        where s.direction = 'improving'
        order by s.quality_slope_per_week desc, s.pattern_id
        limit {TOP_N}
        """
    ).fetchall()
    return markdown_table(
        ["pattern", "description", "events", "quality slope / week", "t"],
        [[r[0], _short(r[1]), r[2], r[3], r[4]] for r in rows],
    )


def strongest_file_pairs(con: duckdb.DuckDBPyConnection, have: set[str]) -> str | None:
    if "marts.file_cooccurrence" not in have:
        return None
    rows = con.execute(
        f"""
        select file_a, file_b, co_occurrences, avg_quality, quality_lift
        from marts.file_cooccurrence
        order by co_occurrences desc, quality_lift desc nulls last, file_a, file_b
        limit {TOP_N}
        """
    ).fetchall()
    return markdown_table(
        ["file a", "file b", "co-occurrences", "avg quality", "quality lift"],
        [[_short(r[0], 50), _short(r[1], 50), r[2], r[3], r[4]] for r in rows],
    )


def largest_clusters(con: duckdb.DuckDBPyConnection, have: set[str]) -> str | None:
    if "marts.pattern_clusters" not in have:
        return None
    rows = con.execute(
        f"""
        select cluster_id, any_value(cluster_label), count(*) as n_patterns
        from marts.pattern_clusters
        group by cluster_id
        order by n_patterns desc, cluster_id
        limit {TOP_N}
        """
    ).fetchall()
    return markdown_table(
        ["cluster", "label", "patterns"], [[r[0], _short(r[1]), r[2]] for r in rows]
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
    out: dict[str, dict[str, MetadataValue]] = {}
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
        ("Weekly quality of the top patterns", plot),
    ]
    summary = "\n\n".join(f"### {title}\n\n{body}" for title, body in sections if body)
    if summary:
        out["summary"] = {"insights": MetadataValue.md(summary)}
    return out
