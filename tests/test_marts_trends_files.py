"""Trend and file co-occurrence marts: they recover what the generator planted (truth.json),
agree with independent computations from the events (scipy, DuckDB corr, range joins), export
a loadable graph, and give the same tables incrementally as on a full refresh."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import duckdb
import numpy as np
import pytest
from scipy.stats import linregress

from engram.build import run_dbt
from engram.query.file_graph import GRAPHML_NS, write_graphml
from ingest.embedder import Embedder
from ingest.loader import ingest_paths
from ingest.warehouse import CHECKOUT_ROOT

# Only these marts and what they need (all of staging, which their tests refer to), with
# "cautious" test selection (a test runs only if all its models are selected), so a
# half-built model elsewhere in the project does not block these tests. ingest_paths has
# embedded every text already, so dbt can run directly.
SELECT = (
    "path:models/staging +pattern_trends +pattern_trend_summary +file_graph_nodes +file_graph_edges"
)
SAMPLE_DIR = CHECKOUT_ROOT / "data" / "sample" / "flask-history"
INCREMENTAL_TABLES = (
    "intermediate.int_pattern_weeks__aggregated",
    "intermediate.int_file_weeks__aggregated",
    "intermediate.int_file_pairs__aggregated",
    "marts.pattern_trends",
    "marts.pattern_trend_summary",
    "marts.file_cooccurrence",
    "marts.file_graph_nodes",
    "marts.file_graph_edges",
)


def build_marts(db: Path, *, full_refresh: bool = False) -> None:
    args = ["build", "--select", SELECT, "--indirect-selection", "cautious"]
    run_dbt([*args, "--full-refresh"] if full_refresh else args, db, capture=True)


@pytest.fixture(scope="module")
def warehouse(
    tmp_path_factory: pytest.TempPathFactory, planted_data: Path, embedder: Embedder
) -> Path:
    db = tmp_path_factory.mktemp("wh_trends") / "engram.duckdb"
    ingest_paths([planted_data], db, embedder=embedder)
    build_marts(db)
    return db


@pytest.fixture(scope="module")
def truth(planted_data: Path) -> dict:
    return json.loads((planted_data / "truth.json").read_text())


def query(db: Path, sql: str, params: list[object] | None = None) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def directions(db: Path, ids: list[str]) -> dict[str, str]:
    rows = query(
        db,
        "select pattern_id, direction from marts.pattern_trend_summary "
        "where pattern_id in (select unnest(?))",
        [ids],
    )
    return dict(rows)


def test_planted_trending_patterns_get_their_direction(warehouse: Path, truth: dict) -> None:
    improving, declining = truth["improving_pattern_ids"], truth["declining_pattern_ids"]
    assert improving and declining
    up, down = directions(warehouse, improving), directions(warehouse, declining)
    assert sum(d == "improving" for d in up.values()) >= 0.8 * len(improving)
    assert sum(d == "declining" for d in down.values()) >= 0.8 * len(declining)
    assert "declining" not in up.values()
    assert "improving" not in down.values()


def test_slope_and_t_stat_match_ordinary_least_squares(warehouse: Path) -> None:
    """Recompute from raw events with scipy: x = whole weeks since the Monday epoch."""
    events = query(
        warehouse,
        "select pattern_id, date_diff('day', date '1970-01-05', event_week) // 7, "
        "outcome_quality from staging.stg_usage_events order by pattern_id",
    )
    by_pattern: dict[str, list[tuple[int, float]]] = {}
    for pattern_id, x, y in events:
        by_pattern.setdefault(pattern_id, []).append((x, y))
    mart = {
        row[0]: row[1:]
        for row in query(
            warehouse,
            "select pattern_id, n_events, quality_slope_per_week, slope_t_stat, direction "
            "from marts.pattern_trend_summary",
        )
    }
    assert set(mart) == set(by_pattern)
    checked = 0
    for pattern_id, points in by_pattern.items():
        n, slope, t_stat, direction = mart[pattern_id]
        x, y = np.array(points, dtype=float).T
        assert n == len(points)
        if len(set(x)) < 2:
            assert slope is None and direction == "insufficient_data"
            continue
        fit = linregress(x, y)
        assert slope == pytest.approx(fit.slope, abs=1e-9)
        if n > 2 and fit.stderr > 0:
            assert t_stat == pytest.approx(fit.slope / fit.stderr, rel=1e-6)
            if n >= 8:
                expected = (
                    "stable"
                    if abs(fit.slope / fit.stderr) < 2.0
                    else ("improving" if fit.slope > 0 else "declining")
                )
                assert direction == expected
                checked += 1
    assert checked > 100


def test_pattern_trends_cover_each_week_and_count_every_event(warehouse: Path) -> None:
    bad_totals = query(
        warehouse,
        """
        with t as (select pattern_id, sum(usage_count) as n from marts.pattern_trends group by 1),
        e as (select pattern_id, count(*) as n from staging.stg_usage_events group by 1)
        select * from t full join e using (pattern_id) where t.n is distinct from e.n
        """,
    )
    assert bad_totals == []
    gaps = query(
        warehouse,
        """
        select t.pattern_id
        from marts.pattern_trends t join marts.pattern_trend_summary s using (pattern_id)
        group by t.pattern_id, s.first_week, s.last_week
        having count(*) <> date_diff('day', s.first_week, s.last_week) // 7 + 1
            or count(distinct t.week) <> count(*)
            or min(t.week) <> s.first_week or max(t.week) <> s.last_week
            or bool_or(isodow(t.week) <> 1)
        """,
    )
    assert gaps == []
    filled = query(warehouse, "select count(*) from marts.pattern_trends where usage_count = 0")
    assert filled[0][0] > 0, "the planted data should leave some empty weeks to fill"


def test_moving_average_is_events_over_the_last_four_calendar_weeks(warehouse: Path) -> None:
    """Independent range join over the events: weeks w-3 .. w, sum / count."""
    mismatches = query(
        warehouse,
        """
        with expected as (
            select t.pattern_id, t.week, avg(e.outcome_quality) as moving
            from marts.pattern_trends t
            left join staging.stg_usage_events e
                on e.pattern_id = t.pattern_id
                and e.event_week between t.week - interval 21 day and t.week
            group by t.pattern_id, t.week
        )
        select t.pattern_id, t.week
        from marts.pattern_trends t join expected x using (pattern_id, week)
        where (t.moving_avg_quality is null) <> (x.moving is null)
            or abs(t.moving_avg_quality - x.moving) > 1e-9
        """,
    )
    assert mismatches == []


def test_planted_hot_pairs_are_the_top_pairs(warehouse: Path, truth: dict) -> None:
    # pairs are per project; the planted pairs are planted across a topic's projects
    hot = {tuple(pair) for pair in truth["hot_file_pairs"]}
    top = query(
        warehouse,
        "select file_a, file_b from marts.file_cooccurrence group by file_a, file_b "
        "order by sum(co_occurrences) desc limit ?",
        [len(hot) + 3],
    )
    assert hot <= set(top)


def test_planted_improving_pairs_improve(warehouse: Path, truth: dict) -> None:
    improving = [tuple(pair) for pair in truth["improving_file_pairs"]]
    assert improving
    # per project: each pair's row in the project that used it most
    rows = {
        (a, b): (slope, direction)
        for a, b, slope, direction in query(
            warehouse,
            "select file_a, file_b, quality_slope_per_week, direction "
            "from marts.file_cooccurrence order by co_occurrences, project_id",
        )
    }
    assert all(rows[pair][0] > 0 for pair in improving)
    assert sum(rows[pair][1] == "improving" for pair in improving) >= 0.75 * len(improving)


def test_success_correlation_is_pearson_over_all_events(warehouse: Path) -> None:
    """The aggregate point-biserial formula equals corr(indicator, quality) over the
    events of the pair's project (pairs and their population are per project)."""
    rows = query(
        warehouse,
        """
        with pairs as (
            select project_id, file_a, file_b, quality_lift, avg_quality, success_correlation
            from marts.file_cooccurrence
            order by co_occurrences desc, project_id, file_a, file_b limit 25
        ),
        direct as (
            select p.project_id, p.file_a, p.file_b,
                corr(list_has_all(e.files_involved, [p.file_a, p.file_b])::int::double,
                     e.outcome_quality) as r,
                avg(e.outcome_quality) as mean_all
            from pairs p join staging.stg_usage_events e on e.project_id = p.project_id
            group by p.project_id, p.file_a, p.file_b
        )
        select p.success_correlation, d.r, p.avg_quality - p.quality_lift, d.mean_all
        from pairs p join direct d using (project_id, file_a, file_b)
        """,
    )
    assert len(rows) == 25
    for mart_r, direct_r, mart_mean, mean_all in rows:
        assert mart_r == pytest.approx(direct_r, abs=1e-9)
        assert mart_mean == pytest.approx(mean_all, abs=1e-9)


def test_file_graph_marts_and_graphml_export(warehouse: Path, tmp_path: Path) -> None:
    n_nodes, n_edges, degree_sum, n_files = query(
        warehouse,
        """
        select (select count(*) from marts.file_graph_nodes),
               (select count(*) from marts.file_graph_edges),
               (select sum(degree) from marts.file_graph_nodes),
               (select count(distinct (e.project_id, f.file_path))
                from staging.stg_usage_event_files f
                join staging.stg_usage_events e using (event_id))
        """,
    )[0]
    assert n_edges > 0 and n_nodes == n_files and degree_sum == 2 * n_edges

    out = tmp_path / "files.graphml"
    assert write_graphml(warehouse, out) == (n_nodes, n_edges)
    graph = ET.parse(out).getroot().find(f"{{{GRAPHML_NS}}}graph")
    assert graph is not None
    nodes = graph.findall(f"{{{GRAPHML_NS}}}node")
    edges = graph.findall(f"{{{GRAPHML_NS}}}edge")
    assert (len(nodes), len(edges)) == (n_nodes, n_edges)
    ids = {node.get("id") for node in nodes}
    assert all(edge.get("source") in ids and edge.get("target") in ids for edge in edges)

    support = int(
        np.median([row[0] for row in query(warehouse, "select weight from marts.file_graph_edges")])
    )
    kept_edges, kept_nodes = query(
        warehouse,
        """
        with e as (select * from marts.file_graph_edges where weight >= ?)
        select (select count(*) from e),
               (select count(*) from (
                   select project_id, file_a from e union select project_id, file_b from e))
        """,
        [support],
    )[0]
    assert write_graphml(warehouse, tmp_path / "dense.graphml", min_support=support) == (
        kept_nodes,
        kept_edges,
    )


def split_events(source: Path, first: Path, second: Path) -> None:
    """Every 7th event goes to the second batch: late events for weeks already built."""
    first.mkdir()
    second.mkdir()
    shutil.copy(source / "patterns.jsonl", first / "patterns.jsonl")
    lines = (source / "events.jsonl").read_text().splitlines(keepends=True)
    (first / "events.jsonl").write_text("".join(line for k, line in enumerate(lines) if k % 7))
    (second / "events.jsonl").write_text("".join(lines[::7]))


def rounded_columns(con: duckdb.DuckDBPyConnection, table: str) -> str:
    """Doubles to 9 decimals: float sums may differ in the last bit with summation order.
    The bookkeeping columns (a write's stamp, written_at) are left out: they differ
    between an incremental and a full build by design."""
    from engram.numeric.incremental import BOOKKEEPING

    schema, name = table.split(".")
    columns = con.execute(
        "select column_name, data_type from information_schema.columns "
        "where table_schema = ? and table_name = ? order by ordinal_position",
        [schema, name],
    ).fetchall()
    return ", ".join(
        f"round({column}, 9) as {column}" if kind == "DOUBLE" else column
        for column, kind in columns
        if column not in BOOKKEEPING
    )


def test_incremental_build_equals_full_refresh(
    tmp_path: Path, planted_data: Path, embedder: Embedder
) -> None:
    first, second = tmp_path / "batch1", tmp_path / "batch2"
    split_events(planted_data, first, second)
    # one file name throughout the suite: dbt's parse is kept per name (engram.build.dbt_env)
    db = tmp_path / "incremental" / "engram.duckdb"
    db.parent.mkdir()
    ingest_paths([first], db, embedder=embedder)
    build_marts(db)
    ingest_paths([second], db, embedder=embedder)
    build_marts(db)  # incremental: only touched groups recomputed

    fresh = tmp_path / "full_refresh" / "engram.duckdb"
    fresh.parent.mkdir()
    shutil.copy(db, fresh)
    build_marts(fresh, full_refresh=True)

    con = duckdb.connect(str(db), read_only=True)
    try:
        con.execute(f"attach '{fresh}' as fresh (read_only)")
        n_events = con.execute("select count(*) from raw.usage_events").fetchone()
        assert n_events is not None and n_events[0] == len(
            (planted_data / "events.jsonl").read_text().splitlines()
        )
        for table in INCREMENTAL_TABLES:
            cols = rounded_columns(con, table)
            rows = con.execute(f"select count(*) from {table}").fetchone()
            assert rows is not None and rows[0] > 0, table
            for left, right in ((table, f"fresh.{table}"), (f"fresh.{table}", table)):
                diff = con.execute(
                    f"select count(*) from (select {cols} from {left} "
                    f"except all select {cols} from {right})"
                ).fetchone()
                assert diff == (0,), f"{left} has rows that {right} lacks"
    finally:
        con.close()


def test_sample_warehouse_builds_trend_and_file_marts(tmp_path: Path, embedder: Embedder) -> None:
    db = tmp_path / "engram.duckdb"
    ingest_paths([SAMPLE_DIR], db, embedder=embedder)
    build_marts(db)
    (events, counted, summaries, patterns, nodes, files) = query(
        db,
        """
        select (select count(*) from staging.stg_usage_events),
               (select sum(usage_count) from marts.pattern_trends),
               (select count(*) from marts.pattern_trend_summary),
               (select count(distinct pattern_id) from staging.stg_usage_events),
               (select count(*) from marts.file_graph_nodes),
               (select count(distinct file_path) from staging.stg_usage_event_files)
        """,
    )[0]
    assert events > 0 and counted == events
    assert summaries == patterns
    assert nodes == files
