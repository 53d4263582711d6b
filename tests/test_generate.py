"""The synthetic data generator: contract-conforming, deterministic, and carrying the
planted structure that truth.json claims, visible in the raw numbers (no model needed)."""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from engram.generate import TOPICS, GenerationSummary, generate, render_contexts
from ingest.contract import validate_event, validate_pattern

N_PATTERNS, N_EVENTS, SEED, WEEKS = 300, 20_000, 3, 52
START = date(2025, 1, 6)
FILES = ("patterns.jsonl", "events.jsonl", "truth.json")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


class Generated:
    """One generated data set, decoded, with the per-event facts the checks need."""

    def __init__(self, outdir: Path, summary: GenerationSummary) -> None:
        self.outdir = outdir
        self.summary = summary
        self.patterns = read_jsonl(outdir / "patterns.jsonl")
        self.events = read_jsonl(outdir / "events.jsonl")
        self.truth = orjson.loads((outdir / "truth.json").read_bytes())
        context_topic = {c: t.slug for t in TOPICS for c in render_contexts(t)}
        self.topic = np.array([context_topic[e["context"]] for e in self.events])
        self.pattern_topic = {p["pattern_id"]: p["metadata"]["topic"] for p in self.patterns}
        self.pid = np.array([e["pattern_id"] for e in self.events])
        self.quality = np.array([e["outcome_quality"] for e in self.events])
        start = datetime(START.year, START.month, START.day, tzinfo=UTC)
        period = timedelta(weeks=WEEKS).total_seconds()
        self.frac = np.array(
            [
                (datetime.fromisoformat(e["timestamp"]) - start).total_seconds() / period
                for e in self.events
            ]
        )


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    outdir = tmp_path_factory.mktemp("generated")
    summary = generate(outdir, N_PATTERNS, N_EVENTS, seed=SEED, weeks=WEEKS, start=START)
    return Generated(outdir, summary)


def slope(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.polyfit(x, y, 1)[0])


# --------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_patterns": 0, "n_events": 10}, "n_patterns"),
        ({"n_patterns": -5, "n_events": 10}, "n_patterns"),
        ({"n_patterns": 10, "n_events": -1}, "n_events"),
        ({"n_patterns": 10, "n_events": 10, "weeks": 0}, "weeks"),
        ({"n_patterns": 10, "n_events": 10, "seed": -1}, "seed"),
        ({"n_patterns": 2.5, "n_events": 10}, "n_patterns"),
    ],
)
def test_bad_arguments_raise_value_error(
    tmp_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        generate(tmp_path / "out", **kwargs)
    assert not (tmp_path / "out" / "events.jsonl").exists()


def test_tiny_and_empty_runs(tmp_path: Path) -> None:
    summary = generate(tmp_path / "one", 1, 0)
    assert summary.n_events == 0 and summary.n_distinct_contexts == 0
    assert (tmp_path / "one" / "events.jsonl").read_bytes() == b""
    assert len(read_jsonl(tmp_path / "one" / "patterns.jsonl")) == 1

    summary = generate(tmp_path / "few", 3, 500, seed=1)
    events = read_jsonl(tmp_path / "few" / "events.jsonl")
    ids = {p["pattern_id"] for p in read_jsonl(tmp_path / "few" / "patterns.jsonl")}
    assert len(events) == 500 and {e["pattern_id"] for e in events} <= ids
    truth = orjson.loads((tmp_path / "few" / "truth.json").read_bytes())
    assert len(truth["topics"]) == 3  # only topics that have patterns
    assert all(len(t["best_pattern_ids"]) == 1 for t in truth["topics"])


# --------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path: Path) -> None:
    def run(name: str, seed: int, n_events: int = 3_000) -> dict[str, bytes]:
        generate(tmp_path / name, 60, n_events, seed=seed, weeks=10)
        return {f: (tmp_path / name / f).read_bytes() for f in FILES}

    first, again, other = run("a", 11), run("b", 11), run("c", 12)
    assert first == again
    for name in FILES:
        assert first[name] != other[name], name
    # patterns do not depend on how many events are drawn
    assert run("d", 11, n_events=500)["patterns.jsonl"] == first["patterns.jsonl"]
    assert not list((tmp_path / "a").glob("*.partial"))


def test_progress_reports_every_event(tmp_path: Path) -> None:
    calls: list[int] = []
    summary = generate(tmp_path, 40, 120_001, seed=5, progress=calls.append)
    assert sum(calls) == 120_001 == summary.n_events
    assert len(calls) >= 3 and all(n > 0 for n in calls)


# --------------------------------------------------------------------------- the contract


def test_patterns_conform(data: Generated) -> None:
    assert len(data.patterns) == N_PATTERNS
    ids = [p["pattern_id"] for p in data.patterns]
    assert len(set(ids)) == N_PATTERNS
    families = {f"{t.slug}/{f.key}": t.slug for t in TOPICS for f in t.families}
    for p in data.patterns:
        validate_pattern(p)
        assert isinstance(p["description"], str) and p["description"].strip()
        assert p["pattern_type"] in {"fix", "diagnose", "refactor", "config", "tool", "workaround"}
        assert p["first_seen"].endswith("Z")
        assert datetime.fromisoformat(p["first_seen"]) < datetime(2025, 1, 6, tzinfo=UTC)
        meta = p["metadata"]
        assert families[meta["family"]] == meta["topic"]
        assert meta["role"] in {"best", "normal", "poor", "improving", "declining"}


def test_events_conform(data: Generated) -> None:
    assert len(data.events) == N_EVENTS == data.summary.n_events
    pattern_ids = {p["pattern_id"] for p in data.patterns}
    assert len({e["event_id"] for e in data.events}) == N_EVENTS
    tools = {tool for t in TOPICS for tool in t.tools}
    projects = {p for t in TOPICS for p in t.projects}
    for e in data.events:
        row = validate_event(e)
        assert e["pattern_id"] in pattern_ids
        assert e["timestamp"].endswith("Z")
        assert isinstance(e["outcome_quality"], float) and 0.0 <= e["outcome_quality"] <= 1.0
        assert round(e["outcome_quality"], 3) == e["outcome_quality"]
        files = e["files_involved"]
        assert 1 <= len(files) <= 6 and len(set(files)) == len(files)
        assert 1 <= len(e["tools_used"]) <= 3 and set(e["tools_used"]) <= tools
        assert isinstance(e["context"], str) and e["context"]
        assert e["project_id"] in projects
        assert row.occurred_at is not None
    assert data.frac.min() >= 0.0 and data.frac.max() < 1.0
    # roughly spread over time: every tenth of the period holds about a tenth of the events
    share = np.bincount((data.frac * 10).astype(int), minlength=10) / N_EVENTS
    assert share.min() > 0.07 and share.max() < 0.13


def test_sessions_are_contiguous_and_coherent(data: Generated) -> None:
    seen: set[str] = set()
    runs: list[list[dict[str, Any]]] = []
    for e in data.events:
        if runs and runs[-1][0]["session_id"] == e["session_id"]:
            runs[-1].append(e)
        else:
            assert e["session_id"] not in seen, "a session's events are consecutive"
            seen.add(e["session_id"])
            runs.append([e])
    lengths = [len(r) for r in runs]
    assert min(lengths) >= 1 and max(lengths) <= 8 and np.mean(lengths) > 2
    for run in runs:
        assert len({(e["context"], e["project_id"]) for e in run}) == 1
        stamps = [e["timestamp"] for e in run]
        assert stamps == sorted(stamps)


# --------------------------------------------------------------------------- truth.json


def test_truth_is_consistent_with_the_files(data: Generated) -> None:
    truth = data.truth
    assert truth["params"] == {
        "n_patterns": N_PATTERNS,
        "n_events": N_EVENTS,
        "seed": SEED,
        "weeks": WEEKS,
        "start": START.isoformat(),
    }
    assert 12 <= len(truth["topics"]) <= 20
    role = {p["pattern_id"]: p["metadata"]["role"] for p in data.patterns}
    for topic in truth["topics"]:
        assert 1 <= len(topic["best_pattern_ids"]) <= 3
        for pid in topic["best_pattern_ids"]:
            assert role[pid] == "best" and data.pattern_topic[pid] == topic["slug"]
        assert len(topic["unseen_tasks"]) == 5
    for name in ("improving", "declining", "poor"):
        ids = truth[f"{name}_pattern_ids"]
        assert ids and all(role[pid] == name for pid in ids)
    pairs = {tuple(p) for p in truth["hot_file_pairs"]}
    assert all(a < b for a, b in pairs) and len(pairs) == 2 * len(truth["topics"])
    assert truth["improving_file_pairs"]
    assert {tuple(p) for p in truth["improving_file_pairs"]} <= pairs
    assert (data.outdir / "truth.json").stat().st_size < 200_000


def test_unseen_tasks_never_occur_as_contexts(data: Generated) -> None:
    possible = {c for t in TOPICS for c in render_contexts(t)}
    observed = {e["context"] for e in data.events}
    assert observed <= possible
    for topic in data.truth["topics"]:
        for task in topic["unseen_tasks"]:
            assert task not in possible


def test_template_tables_are_sound() -> None:
    assert 12 <= len(TOPICS) <= 20 and len({t.slug for t in TOPICS}) == len(TOPICS)
    hot_files = [f for t in TOPICS for pair in t.hot_pairs for f in pair]
    assert len(hot_files) == len(set(hot_files)), "a hot file belongs to one pair only"
    for topic in TOPICS:
        assert len(topic.families) >= 3 and 10 <= len(topic.tasks) <= 30
        assert all(len(f.paraphrases) >= 4 for f in topic.families)
        assert len(set(topic.files)) == len(topic.files) >= 8
        assert not set(hot_files) & set(topic.files), "hot files are never drawn alone"
        assert len(topic.tools) >= 1 and len(topic.slots) >= 4


# --------------------------------------------------------------------------- planted structure


def test_best_patterns_win_their_topic(data: Generated) -> None:
    for topic in data.truth["topics"]:
        in_topic = data.topic == topic["slug"]
        n_topic = int(in_topic.sum())
        stats: dict[str, tuple[float, int]] = {}
        for pid in np.unique(data.pid[in_topic]):
            q = data.quality[in_topic & (data.pid == pid)]
            if len(q) >= 20:
                stats[str(pid)] = (float(q.mean()), len(q))
        ranked = sorted(stats, key=lambda p: stats[p][0], reverse=True)
        best = topic["best_pattern_ids"]
        assert set(ranked[: len(best)]) == set(best), topic["slug"]
        for pid in best:
            assert stats[pid][1] >= 0.05 * n_topic, "best patterns get plenty of events"
            assert stats[pid][0] > 0.8
            off_topic = data.quality[~in_topic & (data.pid == pid)]
            assert len(off_topic) >= 5 and 0.3 < off_topic.mean() < 0.5, "mediocre off-topic"


def test_most_events_use_a_pattern_of_their_own_topic(data: Generated) -> None:
    own = np.array([data.pattern_topic[p] for p in data.pid]) == data.topic
    assert 0.8 < own.mean() < 0.9


def test_improving_and_declining_patterns_trend(data: Generated) -> None:
    for key, sign in (("improving_pattern_ids", 1), ("declining_pattern_ids", -1)):
        for pid in data.truth[key]:
            mask = data.pid == pid
            assert mask.sum() >= 30, pid
            assert np.ptp(data.frac[mask]) > 0.8, "events spread over the whole period"
            assert sign * slope(data.frac[mask], data.quality[mask]) > 0.25, pid
    # a steady pattern shows no such trend (in a topic without a rising file pair)
    steady = next(t for t in data.truth["topics"] if not t["improving_file_pairs"])
    mask = (data.pid == steady["best_pattern_ids"][0]) & (data.topic == steady["slug"])
    assert abs(slope(data.frac[mask], data.quality[mask])) < 0.15


def test_hot_pairs_travel_together(data: Generated) -> None:
    pair_count: Counter[tuple[str, str]] = Counter()
    file_count: Counter[str] = Counter()
    for e in data.events:
        files = sorted(e["files_involved"])
        file_count.update(files)
        pair_count.update(itertools.combinations(files, 2))
    hot = {tuple(p) for p in data.truth["hot_file_pairs"]}
    weakest_hot = min(pair_count[p] for p in hot)
    strongest_other = max(n for p, n in pair_count.items() if p not in hot)
    assert weakest_hot > 3 * strongest_other
    for a, b in hot:  # never split
        assert file_count[a] == file_count[b] == pair_count[(a, b)]
    for topic in data.truth["topics"]:
        n_topic = int((data.topic == topic["slug"]).sum())
        for a, b in topic["hot_file_pairs"]:
            assert 0.3 < pair_count[(a, b)] / n_topic < 0.5


def test_improving_file_pairs_rise(data: Generated) -> None:
    improving = {tuple(p) for p in data.truth["improving_file_pairs"]}
    by_pair: dict[tuple[str, str], list[int]] = defaultdict(list)
    hot = {tuple(p) for p in data.truth["hot_file_pairs"]}
    for i, e in enumerate(data.events):
        files = set(e["files_involved"])
        for a, b in hot:
            if a in files:
                by_pair[(a, b)].append(i)
    for pair, rows in by_pair.items():
        idx = np.array(rows)
        trend = slope(data.frac[idx], data.quality[idx])
        if pair in improving:
            assert trend > 0.2, pair
        else:
            assert abs(trend) < 0.15, pair


def test_contexts_repeat(data: Generated) -> None:
    distinct = {e["context"] for e in data.events}
    assert data.summary.n_distinct_contexts == len(distinct)
    assert data.truth["n_distinct_contexts"] == len(distinct)
    assert len(distinct) / N_EVENTS < 0.1
    total = sum(len(render_contexts(t)) for t in TOPICS)
    assert total < 5_000, "the distinct count stays bounded at any size"
