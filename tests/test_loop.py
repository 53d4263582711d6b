"""The agent loop end to end: `engram mcp` driven by the MCP SDK's own stdio client,
read-your-writes before any rebuild, recommend's strategies and log, on a copy of the
planted warehouse (the journal lives beside a warehouse, so tests never write the
shared fixture's)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest

from engram.query import predict as predict_q
from engram.query import record as record_q
from engram.query.memory import Memory
from ingest.loader import ingest_paths
from ingest.warehouse import connect_for_read

NEW_PATTERN = "replay recorded HTTP cassettes so flaky network tests run offline"
NEAR_TEXT = "make flaky network tests deterministic by replaying recorded HTTP responses"


@pytest.fixture
def loop_db(planted_warehouse: Path, tmp_path: Path) -> Path:
    """A private copy of the built planted warehouse (file + serving copies)."""
    target = tmp_path / "wh"
    shutil.copytree(planted_warehouse.parent, target)
    return target / planted_warehouse.name


def _rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    con = connect_for_read(db)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_read_your_writes_before_the_build(loop_db: Path, embedder: Any) -> None:
    with Memory(loop_db, embedder=embedder) as memory:
        new_id = memory.record_pattern(NEW_PATTERN, pattern_type="fix")
        found = memory.find_similar(NEAR_TEXT, k=5)
        assert found.iloc[0]["pattern_id"] == new_id
        assert not found.iloc[0]["built"] and found.iloc[1:]["built"].all()
        built_id = found.iloc[1]["pattern_id"]
        for quality in (1.0, 0.5, 0.0):
            memory.record_outcome(built_id, quality, task="x")
        again = memory.find_similar(NEAR_TEXT, k=5).set_index("pattern_id")
        assert again.loc[built_id, "pending_outcomes"] == 3
        assert again.loc[built_id, "pending_success_rate"] == pytest.approx(0.5)
    # after ingest + publish-less reading, the pattern is in raw and no longer pending twice
    assert ingest_paths([], loop_db, embed=False).total("loaded") == 4


def test_recommend_strategies_propensities_and_log(loop_db: Path, embedder: Any) -> None:
    task = "intermittent test failure that only happens in CI"
    with Memory(loop_db, embedder=embedder) as memory:
        best = memory.recommend(task, 5, strategy="best", seed=3)
        cautious = memory.recommend(task, 5, strategy="cautious", seed=3)
        explore = memory.recommend(task, 5, strategy="explore", seed=3)
        replay = memory.recommend(task, 5, strategy="explore", seed=3, log=False)
    b = best.patterns
    assert list(b["rank"]) == [1, 2, 3, 4, 5]
    # each strategy's score is predict's relevance x success^exponent with its success
    exponent = predict_q.ranking_params().exponent
    c = cautious.patterns
    assert b["score"].to_numpy() == pytest.approx(
        b["relevance"].to_numpy() * b["predicted_success"].to_numpy() ** exponent
    )
    assert c["score"].to_numpy() == pytest.approx(
        c["relevance"].to_numpy() * c["ci_low"].to_numpy() ** exponent
    )
    for shown in (b, c):
        assert np.all(np.diff(shown["score"].to_numpy()) <= 1e-12)
    assert (c["ci_low"] <= c["predicted_success"]).all()
    assert b.iloc[0]["propensity"] == 1.0 and (b.iloc[1:]["propensity"] == 0).all()
    e = explore.patterns
    assert list(e["pattern_id"]) == list(replay.patterns["pattern_id"])  # the seed replays
    assert 0 < e["propensity_explore"].sum() <= 1.0 + 1e-9
    # planted best patterns of a topic: the explore propensity is a real probability and
    # the candidates' Thompson draws order them
    assert np.all(np.diff(e["score"].to_numpy()) <= 1e-12)
    ingest_paths([], loop_db, embed=False)
    logged = _rows(
        loop_db,
        "select strategy, seed, n_candidates from raw.recommendations order by strategy",
    )
    assert logged == [("best", 3, 5), ("cautious", 3, 5), ("explore", 3, 5)]
    shown = _rows(
        loop_db,
        f"select pattern_id, propensity from raw.recommendation_candidates "
        f"where recommendation_id = '{best.recommendation_id}' order by rank",
    )
    assert [p for p, _ in shown] == list(b["pattern_id"])


def test_recommend_counts_outcomes_recorded_since_the_build(loop_db: Path, embedder: Any) -> None:
    task = "intermittent test failure that only happens in CI"
    with Memory(loop_db, embedder=embedder) as memory:
        before = memory.recommend(task, 5, strategy="best", log=False).patterns
        top = before.iloc[0]["pattern_id"]
        for _ in range(30):  # the top pattern keeps failing
            record_q.record_outcome(loop_db, top, 0.0, task=task)
        after = memory.recommend(task, 5, strategy="best", log=False).patterns.set_index(
            "pattern_id"
        )
    assert top not in after.index or after.loc[top, "rank"] > 1
    assert before.iloc[0]["predicted_success"] > 0.3


def _server_env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@pytest.mark.slow
def test_mcp_server_over_stdio(loop_db: Path, tmp_path: Path) -> None:
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "engram", "mcp", "--db", str(loop_db)],
        env=_server_env(),
    )
    seen: dict[str, Any] = {}

    async def drive() -> None:
        async with (
            # the server's stderr to a file: stdio_client's default, sys.stderr, had no
            # file descriptor when this file ran after test_orchestration.py and others
            # (2026-12-04; alone, and in `make test`'s order, it passed)
            stdio_client(params, errlog=server_log) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            listed = await session.list_tools()
            tools = {tool.name: tool for tool in listed.tools}
            assert set(tools) == {
                "recommend_patterns",
                "find_similar_patterns",
                "record_pattern",
                "record_outcome",
                "pattern_trends",
                "related_files",
                "pattern_alerts",
            }
            alerts_schema = tools["pattern_alerts"].input_schema
            assert "unproven" in str(alerts_schema["properties"]["kind"])
            assert "replacement" in (tools["pattern_alerts"].description or "")
            schema = tools["record_outcome"].input_schema
            assert {"pattern_id", "outcome_quality"} <= set(schema["required"])
            assert "outcome_quality" in (tools["record_outcome"].description or "")

            made = await session.call_tool(
                "record_pattern", {"description": NEW_PATTERN, "pattern_type": "fix"}
            )
            assert not made.is_error
            new_id = made.structured_content["pattern_id"]
            found = await session.call_tool("find_similar_patterns", {"text": NEAR_TEXT, "k": 3})
            first = found.structured_content["patterns"][0]
            assert first["pattern_id"] == new_id and first["built"] is False

            advice = await session.call_tool(
                "recommend_patterns", {"task": NEAR_TEXT, "k": 3, "strategy": "explore"}
            )
            assert not advice.is_error
            result = advice.structured_content
            assert result["recommendation_id"].startswith("rec-")
            assert len(result["recommendations"]) == 3
            chosen = result["recommendations"][0]["pattern_id"]
            for quality in (0.9, 1.0):
                done = await session.call_tool(
                    "record_outcome",
                    {
                        "pattern_id": chosen,
                        "outcome_quality": quality,
                        "task": NEAR_TEXT,
                        "recommendation_id": result["recommendation_id"],
                    },
                )
                assert not done.is_error, done.content
            again = await session.call_tool("find_similar_patterns", {"text": NEAR_TEXT, "k": 10})
            pending = {
                p["pattern_id"]: p["pending_outcomes"] for p in again.structured_content["patterns"]
            }
            if chosen in pending:
                assert pending[chosen] == 2

            bad = await session.call_tool(
                "record_outcome", {"pattern_id": new_id, "outcome_quality": 1.5}
            )
            assert bad.is_error
            assert "outside [0, 1]" in bad.content[0].text
            bad_k = await session.call_tool("recommend_patterns", {"task": "x y", "k": 0})
            assert bad_k.is_error and "k must be a positive integer" in bad_k.content[0].text
            bad_strategy = await session.call_tool(
                "recommend_patterns", {"task": "x y", "strategy": "yolo"}
            )
            assert (
                bad_strategy.is_error and "strategy must be one of" in bad_strategy.content[0].text
            )
            unknown = await session.call_tool("pattern_trends", {"pattern_id": "no-such"})
            assert unknown.is_error and "unknown pattern id" in unknown.content[0].text
            trends = await session.call_tool("pattern_trends", {})
            assert not trends.is_error and trends.structured_content["summary"]
            alerts = await session.call_tool("pattern_alerts", {"top": 500})
            assert not alerts.is_error, alerts.content
            seen["alert_ids"] = [a["alert_id"] for a in alerts.structured_content["alerts"]]
            one_kind = await session.call_tool("pattern_alerts", {"kind": "stale", "top": 3})
            kinds = {a["kind"] for a in one_kind.structured_content["alerts"]}
            assert kinds == {"stale"} and len(one_kind.structured_content["alerts"]) <= 3
            # the planted data's recommendation log is empty: no unproven alerts, no error
            unproven = await session.call_tool("pattern_alerts", {"kind": "unproven"})
            assert not unproven.is_error and unproven.structured_content["alerts"] == []
            bad_kind = await session.call_tool("pattern_alerts", {"kind": "doomed"})
            assert bad_kind.is_error and "unproven" in bad_kind.content[0].text
            bad_top = await session.call_tool("pattern_alerts", {"top": 0})
            assert bad_top.is_error and "top must be a positive integer" in bad_top.content[0].text
            seen["recommendation_id"] = result["recommendation_id"]
            seen["chosen"] = chosen

    with (tmp_path / "server.log").open("w") as server_log:
        anyio.run(drive)
    report = ingest_paths([], loop_db, embed=False)
    assert report.total("rejected") == 0
    links = _rows(loop_db, "select recommendation_id from raw.recommendation_links")
    assert links == [(seen["recommendation_id"],)] * 2
    stored = _rows(
        loop_db,
        "select alert_id from marts.pattern_alerts order by priority, score desc nulls last, "
        "pattern_id",
    )
    assert seen["alert_ids"] == [row[0] for row in stored]


def test_cli_recommend_json(loop_db: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "engram",
            "--db",
            str(loop_db),
            "recommend",
            "flaky CI test",
            "--strategy",
            "cautious",
            "-k",
            "2",
            "--json",
            "--no-log",
        ],
        capture_output=True,
        text=True,
        env=_server_env(),
    )
    assert done.returncode == 0, done.stderr
    import orjson

    result = orjson.loads(done.stdout)
    assert result["strategy"] == "cautious" and len(result["recommendations"]) == 2
    bad = subprocess.run(
        [sys.executable, "-m", "engram", "--db", str(loop_db), "recommend", "  "],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "task is empty" in bad.stderr


def test_mcp_state_switches_to_a_newly_published_build(loop_db: Path) -> None:
    from engram.cli.mcp_server import Warm
    from engram.query.serving import current, publish

    warm = Warm(loop_db)
    first = warm.get()
    assert warm.get() is first  # warm: the same connection while nothing new is published
    before = current(loop_db)
    assert before is not None and first.copy is not None
    publish(loop_db)
    after = current(loop_db)
    assert after is not None and after.build_id != before.build_id
    second = warm.get()
    assert second is not first and second.copy is not None
    assert second.copy.build_id == after.build_id
    assert second.overlay is first.overlay  # the embedded journal entries are kept
    second.close()


def test_declining_candidates_get_a_warning(loop_db: Path, embedder: Any) -> None:
    from engram.query import recommend as recommend_q

    with Memory(loop_db, embedder=embedder) as memory:
        declining_ids = [
            r[0]
            for r in memory.rows(
                "select pattern_id from marts.pattern_trend_summary where direction = 'declining'"
            )
        ]
        assert declining_ids  # planted declining patterns are found by the trend mart
        warnings = recommend_q.declining(memory, [*declining_ids[:3], "not-declining"])
        assert set(warnings) == set(declining_ids[:3])
        assert all("is declining" in w and "per week" in w for w in warnings.values())
        shown = memory.recommend(
            "intermittent test failure that only happens in CI", 10, log=False
        ).patterns
    assert list(shown["declining"]) == [p in set(declining_ids) for p in shown["pattern_id"]]


@pytest.mark.slow
def test_unproven_alert_for_a_pattern_recommended_first_but_not_used(
    loop_db: Path, embedder: Any
) -> None:
    """Five rank-1 recommendations of one pattern and one use since: an unproven alert
    (1 < unproven_max_uses 3); the alerts match a recomputation from the raw log."""
    from engram.build import build

    task = "pytest fails only at midnight because the test depends on the local timezone"
    with Memory(loop_db, embedder=embedder) as memory:
        assert memory.alerts(top=1000, kind="unproven").empty  # the planted log is empty
        tops = {memory.recommend(task, 3).to_dict()["recommendations"][0]["pattern_id"]}
        for _ in range(4):
            tops.add(memory.recommend(task, 3).to_dict()["recommendations"][0]["pattern_id"])
        assert len(tops) == 1  # strategy best is deterministic
        chosen = tops.pop()
        memory.record_outcome(chosen, 0.8)  # no task text: no new context to cluster
    build(loop_db, select="stg_usage_events+ stg_recommendation_candidates+", capture=True)

    expected = _rows(
        loop_db,
        """
        with firsts as (
            select c.pattern_id, count(distinct c.recommendation_id) as n,
                   min(r.created_at) as since
            from raw.recommendation_candidates as c
            join raw.recommendations as r using (recommendation_id)
            where c.rank = 1 group by c.pattern_id
        )
        select f.pattern_id, f.n,
               (select count(*) from raw.usage_events as e
                where e.pattern_id = f.pattern_id and e.occurred_at >= f.since) as used
        from firsts as f
        where f.n >= 5 order by f.pattern_id
        """,
    )
    expected = [row for row in expected if row[2] < 3]
    assert expected == [(chosen, 5, 1)]
    with Memory(loop_db, embedder=embedder) as memory:
        unproven = memory.alerts(top=1000, kind="unproven")
    assert unproven["pattern_id"].tolist() == [chosen]
    assert "recommended first 5 times" in unproven["evidence"].iloc[0]
    assert "used 1 times since" in unproven["message"].iloc[0]
    assert "Try it deliberately" in unproven["message"].iloc[0]
