"""The ranking (relevance x success^exponent) and its walk-forward evaluation.

Pure-numpy properties on hand-built usage statistics; the success term against the
pattern_predictions mart it must agree with; predict's row count on real history; and
`engram evaluate` on a tiny real warehouse, its metrics recomputed by hand here from the
raw events and the embedding model, independently of engram.numeric.ranking.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engram.build import run_dbt
from engram.numeric.ranking import (
    DEFAULT_PARAMS,
    PRIOR_MEAN_STEPS,
    SPARSE_ABOVE,
    RankingParams,
    full_scores,
    prior_mean,
    rank,
    usage_stats,
)
from engram.project import dbt_vars
from engram.query.evaluate import evaluate
from engram.query.memory import Memory
from engram.query.predict import ranking_params, usage
from ingest.embedder import Embedder
from ingest.loader import ingest_paths

EMPTY = np.zeros(0)


def _stats(events: list[tuple[int, int, float]], n_patterns: int):  # type: ignore[no-untyped-def]
    """UsageStats from (pattern, cluster, quality) events."""
    p, c, q = (np.array(x) for x in zip(*events, strict=True))
    return usage_stats(n_patterns, p, c, q)


def test_pattern_never_used_for_this_kind_of_task_does_not_top_on_its_global_mean() -> None:
    # pattern 0: used 30 times in cluster 0 at quality 0.8; pattern 1: 30 times in cluster 1
    # at quality 1.0 (the best global mean), never in cluster 0
    events = [(0, 0, 0.8)] * 30 + [(1, 1, 1.0)] * 30
    stats = _stats(events, 2)
    ranked = rank(stats, np.array([0]), np.array([1.0]), np.array([0]), np.array([1.0]), 2)
    assert ranked.pattern.tolist() == [0, 1]
    assert ranked.fallback.tolist() == ["", "global"]
    # and with no vote at all, the cluster alone still puts the cluster's pattern first
    ranked = rank(stats, EMPTY, EMPTY, np.array([0]), np.array([1.0]), 2)
    assert ranked.pattern.tolist() == [0, 1]
    assert ranked.fallback.tolist() == ["cluster", "global"]


def test_two_lucky_uses_do_not_outrank_two_hundred_good_ones() -> None:
    # same cluster; pattern 0: 2 uses at 1.0; pattern 1: 200 uses at 0.9; others mediocre
    events = [(0, 0, 1.0)] * 2 + [(1, 0, 0.9)] * 200 + [(2, 1, 0.5)] * 300
    stats = _stats(events, 3)
    # both voted for by the nearest texts with equal weight
    ranked = rank(stats, np.array([0, 1]), np.array([1.0, 1.0]), np.array([0]), np.array([1.0]), 3)
    assert ranked.pattern[0] == 1
    assert ranked.success[list(ranked.pattern).index(0)] < 0.9  # pulled toward the means
    low = rank(
        stats,
        np.array([0, 1]),
        np.array([1.0, 1.0]),
        np.array([0]),
        np.array([1.0]),
        3,
        rank_by="lower",
    )
    assert low.pattern[0] == 1


def test_k_rows_whenever_k_patterns_exist_with_fallback_flags() -> None:
    rng = np.random.default_rng(3)
    events = [
        (int(p), int(p % 4), float(q))
        for p, q in zip(rng.integers(0, 40, 400), rng.random(400), strict=True)
    ]
    stats = _stats(events, 50)  # 10 patterns never used at all
    for k in (1, 5, 37, 50, 80):
        ranked = rank(stats, np.array([3]), np.array([1.0]), np.array([3]), np.array([1.0]), k)
        assert len(ranked.pattern) == min(k, 50)
        assert len(set(ranked.pattern.tolist())) == len(ranked.pattern)
        assert (np.diff(ranked.score) <= 0).all()
    full = rank(stats, np.array([3]), np.array([1.0]), np.array([3]), np.array([1.0]), 50)
    assert full.fallback[0] == ""  # the voted pattern
    assert set(full.fallback[1:]) <= {"cluster", "global"}
    never = full.fallback[np.isin(full.pattern, np.arange(40, 50))]
    assert (never == "global").all()


def test_large_rankings_score_only_candidates_and_match_the_full_ranking() -> None:
    """Above SPARSE_ABOVE patterns rank() scores voted, clustered and the best quiet
    patterns only; the answer must be the full ranking's top k, scores included."""
    rng = np.random.default_rng(5)
    n_patterns, n_events = SPARSE_ABOVE * 2, 60_000
    p = rng.zipf(1.5, n_events) % n_patterns
    stats = usage_stats(n_patterns, p, rng.integers(0, 300, n_events), rng.beta(5, 2, n_events))
    for trial in range(20):
        vp = rng.integers(0, n_patterns, 30)
        vw = rng.random(30)
        cids = rng.choice(300, 3, replace=False) if trial % 4 else np.zeros(0, np.int64)
        cws = np.full(len(cids), 1 / max(len(cids), 1))
        k = int(rng.choice([1, 10, 200]))
        got = rank(stats, vp, vw, cids, cws, k)
        score, _ = full_scores(stats, vp, vw, cids, cws)
        want = np.lexsort((np.arange(n_patterns), -score))[:k]
        assert got.pattern.tolist() == want.tolist()
        assert got.score == pytest.approx(score[want], rel=1e-12)


@pytest.mark.slow
def test_success_term_is_the_pattern_predictions_mart(
    planted_warehouse: Path, embedder: Embedder
) -> None:
    """The success of a (cluster, pattern) cell, recomputed by rank(), equals the mart's
    predicted_success: the model that answers is the one prediction_backtest scores."""
    with Memory(planted_warehouse, embedder=embedder) as memory:
        ids, stats = usage(memory)
        mart = memory.sql(
            "select context_cluster_id, pattern_id, predicted_success, posterior_alpha, "
            "posterior_beta from marts.pattern_predictions order by n_events desc limit 25"
        )
    params = ranking_params()
    position = {p: i for i, p in enumerate(ids)}
    for row in mart.itertuples():
        ranked = rank(
            stats,
            EMPTY,
            EMPTY,
            np.array([row.context_cluster_id]),
            np.array([1.0]),
            len(ids),
            params,
        )
        i = list(ranked.pattern).index(position[row.pattern_id])
        assert ranked.success[i] == pytest.approx(row.predicted_success, abs=1e-9)
        assert ranked.alpha[i] == pytest.approx(row.posterior_alpha, abs=1e-9)
        assert ranked.beta[i] == pytest.approx(row.posterior_beta, abs=1e-9)


@pytest.mark.slow
def test_predict_returns_k_rows_on_real_history(sample_warehouse: Path, embedder: Embedder) -> None:
    """The issue's complaint: predict -k 5 returned fewer rows for 30-45% of tasks."""
    with Memory(sample_warehouse, embedder=embedder) as memory:
        texts = memory.sql(
            "select context from staging.stg_contexts order by context_hash limit 12"
        )["context"].tolist()
        texts += ["zzzz unrelated words about gardening", "Fix"]
        n_patterns = int(memory.sql("select count(*) as n from marts.dim_patterns")["n"][0])
        for text in texts:
            for k in (5, 25):
                frame = memory.predict(text, k=k).patterns
                assert len(frame) == k, text
                assert frame["score"].is_monotonic_decreasing
                assert frame["fallback"].isin(["", "cluster", "global"]).all()
                drew = frame[frame["fallback"] == ""]
                assert (drew["n_context_events"] > 0).all()
                assert drew["nearest_tasks"].map(len).gt(0).all()
        assert len(memory.predict("Fix", k=1000).patterns) == n_patterns


# ------------------------------------------------------------------ evaluate, by hand

TOPICS = {
    "A": ["flaky test fails around midnight", "date assertion flakes at midnight UTC"],
    "B": ["tokio future is not Send", "spawned async task is not Send in tokio"],
    "C": ["typo in the README docs", "fix spelling in the documentation"],
}


def _tiny(tmp: Path) -> Path:
    """12 events over 12 days: each pattern's topic texts, qualities chosen by hand."""
    rows = [
        ("A", 0, 1.0), ("B", 0, 1.0), ("C", 0, 0.5), ("A", 1, 0.8), ("B", 1, 0.0),
        ("C", 1, 1.0), ("A", 0, 1.0), ("B", 0, 1.0), ("A", 1, 1.0),
        ("B", 1, 1.0), ("C", 0, 0.95), ("A", 0, 0.2),
    ]  # fmt: skip
    data = tmp / "tiny"
    data.mkdir()
    patterns = [
        {"pattern_id": p, "pattern_type": "fix", "description": f"pattern {p}"} for p in TOPICS
    ]
    events = [
        {
            "event_id": f"e{i:02d}",
            "pattern_id": p,
            "session_id": f"s{i}",
            "timestamp": f"2026-01-{i + 1:02d}T10:00:00Z",
            "outcome_quality": q,
            "context": TOPICS[p][t],
        }
        for i, (p, t, q) in enumerate(rows)
    ]
    (data / "patterns.jsonl").write_text("\n".join(json.dumps(r) for r in patterns))
    (data / "events.jsonl").write_text("\n".join(json.dumps(r) for r in events))
    db = tmp / "engram.duckdb"
    ingest_paths([data], db)
    # staging views only (no clusters, no marts): quick, and the hand recomputation
    # below then needs no clustering
    run_dbt(["run", "--select", "staging"], db, capture=True)
    return db


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny(tmp_path_factory.mktemp("tiny"))


def _by_hand(db: Path, embedder: Embedder, params: RankingParams, holdout: float) -> dict:
    """The walk-forward metrics, recomputed with plain loops over the raw events."""
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    ev = con.execute(
        "select pattern_id, occurred_at, outcome_quality, context from raw.usage_events "
        "order by occurred_at"
    ).df()
    con.close()
    vec = {t: embedder.encode([t])[0] for t in ev["context"].unique()}
    vec = {t: v / np.linalg.norm(v) for t, v in vec.items()}
    pats = sorted(TOPICS)
    s, a, b, gamma, h = (
        params.prior_strength, params.cluster_weight, params.base_weight,
        params.exponent, params.bandwidth,
    )  # fmt: skip
    steps = int(dbt_vars()["prior_mean_steps"])
    n_held = math.ceil(holdout * len(ev))
    ranks: dict[str, list[float]] = {m: [] for m in ("engram", "nearest_10_vote", "most_used")}
    se = {"engram": [], "global": []}
    for i in range(len(ev) - n_held, len(ev)):
        past = ev.iloc[:i]
        used, q = ev["pattern_id"][i], ev["outcome_quality"][i]
        n_p = {p: float((past["pattern_id"] == p).sum()) for p in pats}
        s_p = {p: float(past.loc[past["pattern_id"] == p, "outcome_quality"].sum()) for p in pats}
        g = sum(s_p.values()) / sum(n_p.values())
        prior = math.floor(g * steps + 0.5) / steps  # the prior's grid; g stays the baseline
        m = {p: (s_p[p] + s * prior) / (n_p[p] + s) for p in pats}
        base = {p: (n_p[p] + 1) / (sum(n_p.values()) + len(pats)) for p in pats}
        # the nearest distinct past texts; each votes for the patterns used with it
        texts = list(dict.fromkeys(past["context"]))
        sims = {t: float(vec[t] @ vec[ev["context"][i]]) for t in texts}
        near = sorted(texts, key=lambda t: -sims[t])[: params.neighbours]
        vote = dict.fromkeys(pats, 0.0)
        plain = dict.fromkeys(pats, 0.0)
        for t in near:
            used_here = past.loc[past["context"] == t, "pattern_id"]
            for p in used_here:
                vote[p] += math.exp(-(1 - sims[t]) / h) / len(used_here)
        for t in near[:10]:
            used_here = past.loc[past["context"] == t, "pattern_id"]
            for p in used_here:
                plain[p] += max(sims[t], 0) / len(used_here)
        v = sum(vote.values())
        # no context clusters in a staging-only build: cluster share = base share
        score = {p: (vote[p] + a * base[p]) / (v + a) * m[p] ** gamma for p in pats}
        se["engram"].append((m[used] - q) ** 2)
        se["global"].append((g - q) ** 2)
        if q < 0.9:
            continue
        for method, sc in (
            ("engram", score),
            (
                "nearest_10_vote",
                {p: plain[p] + 1e-9 * n_p[p] / (sum(n_p.values()) + 1) for p in pats},
            ),
            ("most_used", n_p),
        ):
            order = sorted(pats, key=lambda p: (-sc[p], pats.index(p)))
            ranks[method].append(order.index(used) + 1.0)
    del b  # no cluster level here: base_weight does not enter
    out = {}
    for method, r in ranks.items():
        r_arr = np.array(r)
        out[method] = (np.mean(r_arr <= 1), np.mean(r_arr <= 5), np.mean(1 / r_arr))
    out["brier"] = (np.mean(se["engram"]), np.mean(se["global"]))
    out["n_ranked"] = len(ranks["engram"])
    return out


@pytest.mark.slow
def test_evaluate_matches_a_hand_recomputation(tiny: Path, embedder: Embedder) -> None:
    params = RankingParams(neighbours=3, bandwidth=0.2, cluster_weight=1.0, exponent=2.0)
    with Memory(tiny, embedder=embedder) as memory:
        result = evaluate(memory, holdout=0.34, min_quality=0.9, params=params)
    hand = _by_hand(tiny, embedder, params, 0.34)
    table = result.metrics.set_index("method")
    assert result.counts == {
        "events": 12,
        "held_out": 5,
        "ranked": hand["n_ranked"],
        "brier_events": 5,
    }
    assert hand["n_ranked"] == 4  # events 7-10 (quality >= 0.95); event 11 is 0.2
    for method in ("engram", "nearest_10_vote", "most_used"):
        got = table.loc[method, ["hit_at_1", "hit_at_5", "mrr"]].to_numpy(dtype=float)
        assert got == pytest.approx(hand[method], abs=1e-9), method
    assert table.loc["engram", "brier"] == pytest.approx(hand["brier"][0], abs=1e-9)
    ref = table.loc["global_mean (Brier reference)", "brier"]
    assert ref == pytest.approx(hand["brier"][1], abs=1e-9)
    assert table.loc["engram", "brier_skill"] == pytest.approx(
        1 - hand["brier"][0] / hand["brier"][1]
    )
    # the texts are unambiguous: the nearest-text rankings name the used pattern first
    assert table.loc["engram", "hit_at_1"] == 1.0
    assert table.loc["nearest_10_vote", "hit_at_1"] == 1.0
    assert table.loc["most_used", "hit_at_1"] < 1.0


def _engram(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engram", *args], capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_evaluate_cli_json_and_usage_errors(tiny: Path) -> None:
    done = _engram("evaluate", "--db", str(tiny), "--holdout", "0.34", "--json", "--events")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    methods = [m["method"] for m in out["metrics"]]
    assert methods[:4] == ["engram", "nearest_10_vote", "most_used", "global_success"]
    assert out["counts"]["held_out"] == 5 and len(out["events"]) == 5
    assert out["settings"]["params"]["neighbours"] == DEFAULT_PARAMS.neighbours
    bad = _engram("evaluate", "--db", str(tiny), "--holdout", "1.5")
    assert bad.returncode == 2 and "--holdout" in bad.stderr
    table = _engram("evaluate", "--db", str(tiny), "--holdout", "0.34")
    assert table.returncode == 0 and "nearest_10_vote" in table.stdout
    pd.Series(methods)  # plain JSON strings


def test_the_query_time_prior_grid_is_the_marts() -> None:
    """ranking.prior_mean's default grid is dbt var prior_mean_steps (the marts' grid), and
    it rounds half-way up like macros/shrinkage.sql (0.125 -> 0.13, not Python's 0.12)."""
    assert int(dbt_vars()["prior_mean_steps"]) == PRIOR_MEAN_STEPS
    assert prior_mean(0.125) == 0.13
    assert prior_mean(0.54565) == 0.55
    assert prior_mean(0.5449) == 0.54
