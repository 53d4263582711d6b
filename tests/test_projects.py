"""Projects: each repository's memory kept apart where it must be (files, file pairs, the
file graph), shared where it helps (success borrows from other projects, and says so),
with the project derived from the git remote (README "Projects")."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest

from engram.build import build
from engram.cli.main import main
from engram.numeric.ranking import DEFAULT_PARAMS, full_scores, rank, usage_stats
from engram.query.memory import Memory
from ingest.embedder import Embedder
from ingest.loader import ingest_paths
from ingest.project_identity import current_project, git_remote_url, normalize_remote

OLD, YOUNG = "github.com/acme/old", "github.com/acme/young"
GOOD, BAD = "pat-good", "pat-bad"
TASK = "database migration fails on startup"


# ------------------------------------------------------------------ project identity


@pytest.mark.parametrize(
    ("url", "identity"),
    [
        ("git@github.com:pallets/flask.git", "github.com/pallets/flask"),
        ("https://github.com/pallets/flask", "github.com/pallets/flask"),
        ("https://github.com/pallets/flask.git/", "github.com/pallets/flask"),
        ("ssh://git@GitHub.COM:22/pallets/flask.git", "github.com/pallets/flask"),
        ("https://user:token@GitHub.com/pallets/flask.git", "github.com/pallets/flask"),
        ("git://gitlab.example.org/group/sub/repo", "gitlab.example.org/group/sub/repo"),
        ("git@gitlab.example.org:group/sub/repo.git", "gitlab.example.org/group/sub/repo"),
        ("/srv/git/repo.git", "srv/git/repo"),
        ("file:///srv/git/repo.git", "srv/git/repo"),
    ],
)
def test_remote_urls_normalise_to_one_identity(url: str, identity: str) -> None:
    assert normalize_remote(url) == identity


def test_path_case_is_kept_and_empty_url_is_an_error() -> None:
    assert normalize_remote("git@github.com:Pallets/Flask.git") == "github.com/Pallets/Flask"
    with pytest.raises(ValueError, match="empty"):
        normalize_remote("  ")


def _git(where: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(where), *args], check=True, capture_output=True)


def test_current_project_comes_from_the_git_remote_of_a_real_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ENGRAM_PROJECT", raising=False)
    ssh, https = tmp_path / "ssh", tmp_path / "https"
    for repo in (ssh, https):
        repo.mkdir()
        _git(repo, "init", "-q")
    _git(ssh, "remote", "add", "origin", "git@GitHub.com:acme/Tool.git")
    _git(https, "remote", "add", "upstream", "https://github.com/acme/Tool")
    (ssh / "sub").mkdir()
    # ssh and https clones of one repository are one project, from any subfolder
    assert current_project(directory=ssh / "sub") == "github.com/acme/Tool"
    assert current_project(directory=https) == "github.com/acme/Tool"
    _git(https, "remote", "add", "origin", "https://gitlab.com/acme/fork.git")
    assert git_remote_url(https) == "https://gitlab.com/acme/fork.git"  # origin wins
    bare = tmp_path / "bare"
    bare.mkdir()
    _git(bare, "init", "-q")
    assert current_project(directory=bare) == "default"  # no remote
    plain = tmp_path / "plain"
    plain.mkdir()
    assert current_project(directory=plain) == "default"  # no repository
    assert current_project("given/name", directory=ssh) == "given/name"
    monkeypatch.setenv("ENGRAM_PROJECT", "from-env")
    assert current_project(directory=ssh) == "from-env"
    assert current_project("given/name", directory=ssh) == "given/name"


# ------------------------------------------------------------------ ranking (pure)


def _stats(rng: np.random.Generator, n: int, n_patterns: int = 12) -> Any:
    return usage_stats(
        n_patterns,
        rng.integers(0, n_patterns, n),
        rng.integers(0, 3, n),
        rng.random(n),
    )


def test_sharing_with_no_other_project_or_zero_weight_changes_nothing() -> None:
    rng = np.random.default_rng(3)
    own = _stats(rng, 400)
    clusters, weights = np.array([0, 2]), np.array([0.7, 0.3])
    empty = np.zeros(0)
    for c, w in ((clusters, weights), (np.zeros(0, np.int64), empty)):
        alone = full_scores(own, empty, empty, c, w, DEFAULT_PARAMS)
        # every project's usage = this project's: the other-projects level is empty
        same = full_scores(replace(own, shared=own), empty, empty, c, w, DEFAULT_PARAMS)
        np.testing.assert_allclose(same[1], alone[1], rtol=1e-12)
        # other projects exist but count for nothing at weight 0
        merged = _merge(own, _stats(rng, 900))
        params = replace(DEFAULT_PARAMS, share_weight=0.0)
        zero = full_scores(replace(own, shared=merged), empty, empty, c, w, params)
        np.testing.assert_allclose(zero[1], alone[1], rtol=1e-12)


def _merge(a: Any, b: Any) -> Any:
    """UsageStats of two event sets together, rebuilt from their cells."""
    pattern = np.concatenate([a.cell_pattern, b.cell_pattern])
    cluster = np.concatenate([a.cell_cluster, b.cell_cluster])
    n = np.concatenate([a.cell_n, b.cell_n])
    s = np.concatenate([a.cell_sum, b.cell_sum])
    reps = n.astype(np.int64)
    return usage_stats(
        a.n_patterns, pattern.repeat(reps), cluster.repeat(reps), (s / n).repeat(reps)
    )


def test_a_young_project_borrows_what_worked_elsewhere_and_counts_it() -> None:
    # pattern 0 worked 40 times in another project, pattern 1 failed 40 times there; the
    # young project used each once, with the same middling outcome
    own = usage_stats(2, np.array([0, 1]), np.array([0, 0]), np.array([0.5, 0.5]))
    others = usage_stats(
        2, np.repeat([0, 1], 40), np.zeros(80, np.int64), np.repeat([1.0, 0.0], 40)
    )
    shared = replace(own, shared=_merge(own, others))
    c, w, empty = np.array([0]), np.array([1.0]), np.zeros(0)
    _, alone = full_scores(own, empty, empty, c, w, DEFAULT_PARAMS)
    _, borrowed = full_scores(shared, empty, empty, c, w, DEFAULT_PARAMS)
    assert alone[0] == pytest.approx(alone[1])  # alone, nothing tells them apart
    assert borrowed[0] > 0.75 > 0.25 > borrowed[1]
    ranked = rank(shared, np.zeros(0, np.int64), empty, c, w, 2, DEFAULT_PARAMS)
    assert list(ranked.pattern) == [0, 1]
    # 40 events elsewhere each, counted at the share weight (what each is worth here)
    w40 = DEFAULT_PARAMS.share_weight * 40
    assert ranked.borrowed is not None and list(ranked.borrowed) == [w40, w40]


# ------------------------------------------------------------------ a two-project warehouse


def _events(project: str, n_good: int, n_bad: int, q_good: float, q_bad: float) -> list[dict]:
    rows = []
    for i in range(n_good + n_bad):
        good = i < n_good
        rows.append(
            {
                "event_id": f"{project[-5:]}-{i}",
                "pattern_id": GOOD if good else BAD,
                "session_id": f"s{i}",
                "timestamp": f"2025-0{1 + i % 6}-{10 + i % 15}T10:00:00Z",
                "outcome_quality": q_good if good else q_bad,
                "files_involved": ["src/app.py", "src/db.py"] + (["README.md"] if i % 2 else []),
                "context": f"{TASK} ({i % 3})",
                **({"project_id": project} if project == OLD else {}),
            }
        )
    return rows


@pytest.fixture(scope="module")
def two_projects(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Path:
    """OLD (60 events, in its records) and YOUNG (6 events, project given at ingest):
    GOOD worked in OLD, BAD did not; YOUNG saw both go middling."""
    root = tmp_path_factory.mktemp("projects")
    (root / "old").mkdir()
    (root / "young").mkdir()
    patterns = [
        {"pattern_id": GOOD, "description": "run the pending schema migrations before start"},
        {"pattern_id": BAD, "description": "drop and recreate the database by hand"},
    ]
    (root / "old" / "patterns.jsonl").write_text("\n".join(json.dumps(p) for p in patterns))
    for name, rows in (
        ("old", _events(OLD, 30, 30, 1.0, 0.1)),
        ("young", _events(YOUNG, 3, 3, 0.6, 0.6)),
    ):
        (root / name / "events.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    db = root / "engram.duckdb"
    ingest_paths([root / "old"], db, embedder=embedder)
    # the CLI path: --project for records without one
    assert main(["ingest", str(root / "young"), "--project", YOUNG, "--db", str(db)]) == 0
    build(db, capture=True)
    return db


@pytest.mark.slow
def test_ingest_project_fills_only_records_that_lack_one(two_projects: Path) -> None:
    con = duckdb.connect(str(two_projects), read_only=True)
    try:
        counts = dict(
            con.execute("select project_id, count(*) from raw.usage_events group by 1").fetchall()
        )
    finally:
        con.close()
    assert counts == {OLD: 60, YOUNG: 6}


@pytest.mark.slow
def test_files_and_pairs_are_per_project(two_projects: Path, embedder: Embedder) -> None:
    con = duckdb.connect(str(two_projects), read_only=True)
    try:
        pairs = con.execute(
            "select project_id, co_occurrences from marts.file_cooccurrence "
            "where file_a = 'src/app.py' and file_b = 'src/db.py' order by 1"
        ).fetchall()
        # recomputed from the raw events: events whose files hold both, per project
        truth = con.execute(
            "select project_id, count(*) from raw.usage_events "
            "where list_contains(files_involved, 'src/app.py') "
            "and list_contains(files_involved, 'src/db.py') group by 1 order by 1"
        ).fetchall()
        nodes = con.execute(
            "select project_id, n_events, degree from marts.file_graph_nodes "
            "where file_path = 'src/app.py' order by 1"
        ).fetchall()
        edges = con.execute(
            "select project_id, count(*) from marts.file_graph_edges group by 1 order by 1"
        ).fetchall()
    finally:
        con.close()
    assert pairs == truth == [(OLD, 60), (YOUNG, 6)]  # never one merged (app, db) of 66
    # README.md is in every other event: 30 of OLD's (a pair), 3 of YOUNG's (below support 5)
    assert nodes == [(OLD, 60, 2), (YOUNG, 6, 1)]
    assert edges == [(OLD, 3), (YOUNG, 1)]
    with Memory(two_projects, embedder=embedder) as memory:
        young = memory.files("src/app.py", project=YOUNG)
        everyone = memory.files("src/app.py", project="*")
    assert set(young["project_id"]) == {YOUNG}
    assert young.set_index("travels_with").loc["src/db.py", "co_occurrences"] == 6
    assert sorted(everyone["project_id"].unique()) == [OLD, YOUNG]


@pytest.mark.slow
def test_a_young_project_borrows_and_says_so(two_projects: Path, embedder: Embedder) -> None:
    with Memory(two_projects, embedder=embedder) as memory:
        young = memory.predict(TASK, 2, project=YOUNG)
        pooled = memory.predict(TASK, 2, project="*")
        rows = young.patterns.set_index("pattern_id")
    assert young.project == YOUNG and pooled.project is None
    assert "borrowed" not in pooled.patterns  # the pooled view borrows nothing
    # YOUNG's own outcomes are equal (0.6 each); OLD's experience separates them
    assert rows.loc[GOOD, "predicted_success"] > 0.6 > rows.loc[BAD, "predicted_success"]
    assert list(young.patterns["pattern_id"]) == [GOOD, BAD]
    for pattern in (GOOD, BAD):
        said = re.fullmatch(
            r"borrowed: (\d+) uses? in 1 other project", rows.loc[pattern, "borrowed"]
        )
        assert said, rows.loc[pattern, "borrowed"]
        # OLD used each pattern 30 times: the uses borrowed are those in the task's kinds
        # of task (weighted over its context clusters), so at most 30 and at least one
        assert 1 <= int(said.group(1)) <= 30
        assert int(said.group(1)) == round(rows.loc[pattern, "borrowed_events"])
    con = duckdb.connect(str(two_projects), read_only=True)
    try:
        mart = con.execute(
            "select pattern_id, sum(n_events), sum(other_n_events), max(other_projects) "
            "from marts.pattern_project_predictions where project_id = ? group by 1 order by 1",
            [YOUNG],
        ).fetchall()
    finally:
        con.close()
    assert mart == [(BAD, 3, 30, 1), (GOOD, 3, 30, 1)]


@pytest.mark.slow
def test_predict_ranks_with_the_marts_formula(two_projects: Path, embedder: Embedder) -> None:
    """The four levels live in SQL (pattern_project_predictions) for the marts and in
    numpy (engram.numeric.ranking) for predict: for every cell of each project both give
    the same success."""
    from engram.query import predict as predict_q

    con = duckdb.connect(str(two_projects), read_only=True)
    try:
        cells = con.execute(
            "select project_id, context_cluster_id, pattern_id, predicted_success "
            "from marts.pattern_project_predictions"
        ).fetchall()
    finally:
        con.close()
    assert len(cells) >= 4
    params = predict_q.ranking_params()
    empty = np.zeros(0)
    with Memory(two_projects, embedder=embedder) as memory:
        for project, cluster, pattern, expected in cells:
            ids, stats = predict_q.usage(memory, project)
            assert stats.shared is not None
            _, success = full_scores(stats, empty, empty, np.array([cluster]), np.ones(1), params)
            assert success[list(ids).index(pattern)] == pytest.approx(expected, rel=1e-9)


@pytest.mark.slow
def test_evaluate_per_project_with_and_without_sharing(
    two_projects: Path, embedder: Embedder, capsys: pytest.CaptureFixture[str]
) -> None:
    """Per project, only its events are held out; share weight 0 is exactly the project
    alone (recomputed two ways), and the default weight changes OLD's estimates where
    YOUNG's earlier events exist."""
    from engram.query import predict as predict_q
    from engram.query.evaluate import evaluate

    params = predict_q.ranking_params()
    with Memory(two_projects, embedder=embedder) as memory:
        alone = evaluate(memory, 0.3, 0.9, params, project=OLD, share=False)
        zero = evaluate(
            memory, 0.3, 0.9, replace(params, share_weight=0.0), project=OLD, share=True
        )
        shared = evaluate(memory, 0.3, 0.9, params, project=OLD, share=True)
        with pytest.raises(Exception, match="no events of project"):
            evaluate(memory, 0.3, 0.9, params, project="github.com/acme/none")
    assert alone.counts["events"] == 60 and alone.counts["held_out"] == 18
    assert alone.settings["share"] is False and shared.settings["share"] is True
    np.testing.assert_allclose(zero.per_event["p_engram"], alone.per_event["p_engram"])
    assert (shared.per_event["p_engram"] - alone.per_event["p_engram"]).abs().max() > 1e-6
    db = str(two_projects)
    args = ["evaluate", "--holdout", "0.3", "--project", OLD, "--no-sharing", "--json"]
    assert main([*args, "--db", db]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["settings"]["project"] == OLD and out["settings"]["share"] is False
    assert out["counts"]["held_out"] == 18


@pytest.mark.slow
def test_cli_and_mcp_take_a_project(
    two_projects: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = str(two_projects)
    assert main(["predict", TASK, "-k", "2", "--project", YOUNG, "--json", "--db", db]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["project"] == YOUNG
    assert all(row["borrowed"].startswith("borrowed: ") for row in answer["predictions"])
    assert main(["predict", TASK, "-k", "2", "--all-projects", "--json", "--db", db]) == 0
    assert json.loads(capsys.readouterr().out)["project"] is None
    assert main(["files", "src/db.py", "--project", OLD, "--json", "--db", db]) == 0
    assert {row["project_id"] for row in json.loads(capsys.readouterr().out)} == {OLD}
    # record: --project, else $ENGRAM_PROJECT
    assert main(["record", "outcome", GOOD, "0.9", "--project", YOUNG, "--json", "--db", db]) == 0
    assert json.loads(capsys.readouterr().out)[0]["record"]["project_id"] == YOUNG
    monkeypatch.setenv("ENGRAM_PROJECT", OLD)
    assert main(["record", "outcome", GOOD, "0.9", "--json", "--db", db]) == 0
    assert json.loads(capsys.readouterr().out)[0]["record"]["project_id"] == OLD

    from engram.cli.mcp_server import create_server

    # last in this module: the server keeps its Memory (and the serving copy's connection,
    # with its embed() function) open for the rest of the process
    server = create_server(two_projects)

    async def ask() -> tuple[Any, Any]:
        advice = await server.call_tool(
            "recommend_patterns", {"task": TASK, "k": 2, "project": YOUNG}
        )
        files = await server.call_tool("related_files", {"path": "src/app.py", "project": YOUNG})
        return advice, files

    advice, files = asyncio.run(ask())
    assert not advice.is_error, advice.content
    shown = advice.structured_content["recommendations"]
    assert all(row["borrowed"].startswith("borrowed: ") for row in shown)
    assert not files.is_error, files.content
    assert {row["project_id"] for row in files.structured_content["related"]} == {YOUNG}
