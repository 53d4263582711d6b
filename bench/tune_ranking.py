"""`python -m bench.tune_ranking`: choose the ranking's knobs on data the tests do not
check, then report the walk-forward evaluation with them everywhere.

Tuning data: werkzeug-history's older 80% (its newest 5% held out, so the newest 20% of
the real history is never looked at while choosing), and planted data generated with a
seed the tests do not use (11; tests use 7). The objective is the mean over both of
(hit@5 + MRR) / 2 of the used pattern, over held-out events with quality >= 0.9, subject
to, for every planted topic of seed 11, a planted best pattern ranking first for a
majority (>= 3 of 5) of its unseen tasks (the issue wants both at once; without the
constraint the search drifts to "what is common nearby" and loses the planted best).
Coordinate-wise over a small grid from START, two passes; --no-search reports
ranking.DEFAULT_PARAMS (what this search chose) without searching.

Report: flask-history and werkzeug-history (all of it, newest 5% held out) and the
tests' planted data (seed 7), with the chosen knobs, and on the planted warehouse how
often `predict -k 1` puts a planted best pattern first for an unseen task.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.paths import PROJECT_ROOT
from engram.numeric.ranking import DEFAULT_PARAMS, RankingParams
from engram.query.evaluate import History, load_history, prepare, score_cases, score_events

SHARED = PROJECT_ROOT.parent / "shared" / "datasets"
GRID: dict[str, list[Any]] = {
    "neighbours": [5, 10, 20, 40, 80],
    "bandwidth": [0.03, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0],
    "cluster_weight": [0.25, 0.5, 1.0, 2.0, 4.0],
    "base_weight": [1.0, 5.0, 20.0, 100.0],
    "exponent": [0.0, 1.0, 2.0, 4.0, 8.0],
    "n_clusters": [1, 3],
}


def warehouse(work: Path, name: str, source: Path | None, seed: int | None = None) -> Path:
    """Ingest + build one warehouse under work/ (reused when already built)."""
    from engram.build import build
    from ingest.loader import ingest_paths

    db = work / name / "engram.duckdb"
    if (work / name / "built").exists():
        return db
    db.parent.mkdir(parents=True, exist_ok=True)
    if source is None:
        from engram.generate import generate

        source = work / name / "data"
        generate(source, 300, 6000, seed=seed)
    print(f"[{name}] ingest + build ...", flush=True)
    ingest_paths([source], db)
    build(db, capture=True)
    (work / name / "built").touch()
    return db


def history_of(db: Path) -> History:
    from engram.query.reader import Reader

    with Reader(db) as reader:
        return load_history(reader)


def metrics(history: History, cases: list, params: RankingParams) -> dict[str, Any]:
    frame, counts = score_events(score_cases(history, cases, params), 0.9)
    table = {row["method"]: row for row in frame.to_dict(orient="records")}
    return {"metrics": table, "counts": counts}


def objective(result: dict[str, Any]) -> float:
    row = result["metrics"]["engram"]
    return (row["hit_at_5"] + row["mrr"]) / 2


def planted_first(db: Path, data: Path, params: RankingParams) -> dict[str, Any]:
    """Unseen planted tasks whose first predict row is one of the topic's best patterns,
    in all and per topic."""
    from engram.query import predict as predict_q
    from engram.query.memory import Memory

    truth = json.loads((data / "truth.json").read_text())
    hits = total = 0
    per_topic: dict[str, str] = {}
    with Memory(db) as memory:
        for topic in truth["topics"]:
            best = set(topic["best_pattern_ids"])
            if not best:
                continue
            got = 0
            for task in topic["unseen_tasks"]:
                top = predict_q.predict(memory, task, k=1, params=params).patterns
                got += int(top["pattern_id"].iloc[0] in best)
            per_topic[topic.get("slug", str(len(per_topic)))] = (
                f"{got}/{len(topic['unseen_tasks'])}"
            )
            hits += got
            total += len(topic["unseen_tasks"])
    return {"tasks": f"{hits}/{total}", "per_topic": per_topic}


def best_first(history: History, data: Path, params: RankingParams) -> tuple[float, float]:
    """(share of all unseen planted tasks, smallest share within one topic) whose
    top-ranked pattern is one of the topic's planted best, ranking over the whole history
    as predict would."""
    from engram.numeric.ranking import usage_stats
    from engram.query.evaluate import model_scores, neighbourhood_of
    from ingest.embedder import Embedder

    key = str(data)
    if key not in _TASKS:
        truth = json.loads((data / "truth.json").read_text())
        tasks = [
            (topic["slug"], t, set(topic["best_pattern_ids"]))
            for topic in truth["topics"]
            if topic["best_pattern_ids"]
            for t in topic["unseen_tasks"]
        ]
        vectors = Embedder().encode([t for _, t, _ in tasks])
        vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        n = len(history.times)
        hoods = [neighbourhood_of(history, v, n, 200) for v in vectors]
        stats = usage_stats(
            len(history.pattern_ids), history.pattern, history.event_cluster, history.quality
        )
        _TASKS[key] = (tasks, hoods, stats)
    tasks, hoods, stats = _TASKS[key]
    per_topic: dict[str, list[int]] = {}
    for (slug, _, best), hood in zip(tasks, hoods, strict=True):
        score, _ = model_scores(stats, hood, params)
        top = int(np.lexsort((np.arange(len(score)), -score))[0])
        per_topic.setdefault(slug, []).append(int(str(history.pattern_ids[top]) in best))
    shares = [float(np.mean(v)) for v in per_topic.values()]
    return float(np.mean([x for v in per_topic.values() for x in v])), min(shares)


_TASKS: dict[str, Any] = {}
# where the search starts (fixed, so the run that chose DEFAULT_PARAMS can be repeated)
START = RankingParams(
    neighbours=10, bandwidth=0.1, cluster_weight=1.0, base_weight=5.0, exponent=4.0, n_clusters=3
)
# constraint while tuning: for every planted topic, a best pattern first for a majority of
# its unseen tasks (the "a planted best pattern first for every topic")
MIN_TOPIC_SHARE = 0.6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tune_ranking", description=__doc__)
    parser.add_argument("--workdir", type=Path, default=PROJECT_ROOT / "artifacts" / "tune")
    parser.add_argument("--no-search", action="store_true", help="report DEFAULT_PARAMS only")
    args = parser.parse_args(argv)
    work = args.workdir
    started = time.perf_counter()
    dbs = {
        "werkzeug": warehouse(work, "werkzeug", SHARED / "werkzeug-history"),
        "flask": warehouse(work, "flask", SHARED / "flask-history"),
        "planted_tune": warehouse(work, "planted_tune", None, seed=11),
        "planted_test": warehouse(work, "planted_test", None, seed=7),
    }
    histories = {name: history_of(db) for name, db in dbs.items()}
    werkzeug = histories["werkzeug"]
    tune_sets = {
        "werkzeug_older_80pct": (
            (h := werkzeug.head(int(0.8 * len(werkzeug.times)))),
            prepare(h, 0.05),
        ),
        "planted_seed11": (histories["planted_tune"], prepare(histories["planted_tune"], 0.05)),
    }

    planted_tune = (histories["planted_tune"], work / "planted_tune" / "data")

    def tuned(params: RankingParams) -> float:
        """The objective, or below any feasible one when the planted best pattern is not
        first for MIN_TOPIC_SHARE of some topic's tuning planted tasks (both goals must hold)."""
        value = sum(objective(metrics(h, c, params)) for h, c in tune_sets.values())
        value /= len(tune_sets)
        _, worst_topic = best_first(*planted_tune, params)
        return value if worst_topic >= MIN_TOPIC_SHARE else value - 10.0

    params = START if not args.no_search else DEFAULT_PARAMS
    best = tuned(params)
    trail = [{"params": dataclasses.asdict(params), "objective": best}]
    if not args.no_search:
        for _ in range(2):
            for knob, values in GRID.items():
                for value in values:
                    candidate = dataclasses.replace(params, **{knob: value})
                    score = tuned(candidate)
                    if score > best + 1e-9:
                        best, params = score, candidate
                        trail.append({"params": dataclasses.asdict(params), "objective": best})
                        print(f"  better: {knob}={value} -> {best:.4f}", flush=True)
    print(f"chosen: {dataclasses.asdict(params)} (objective {best:.4f})")
    report: dict[str, Any] = {"chosen": dataclasses.asdict(params), "trail": trail}
    for name, (h, c) in tune_sets.items():
        report[f"tune:{name}"] = metrics(h, c, params)
    for name in ("flask", "werkzeug", "planted_test"):
        h = histories[name]
        report[f"report:{name}"] = metrics(h, prepare(h, 0.05), params)
    report["planted_tune_best_first"] = best_first(*planted_tune, params)
    report["planted_best_first"] = planted_first(
        dbs["planted_test"], work / "planted_test" / "data", params
    )
    report["seconds"] = round(time.perf_counter() - started, 1)
    for key, value in report.items():
        if key.startswith(("tune:", "report:")):
            print(f"\n{key}  (ranked {value['counts']['ranked']} events)")
            for method, row in value["metrics"].items():
                cells = [
                    f"{m}={row[m]:.3f}" if row[m] is not None else f"{m}=-"
                    for m in ("hit_at_1", "hit_at_5", "mrr", "brier", "brier_skill")
                ]
                print(f"  {method:32s} " + "  ".join(cells))
    share, worst = report["planted_tune_best_first"]
    print(f"\nplanted (seed 11, tuning) best first: {share:.3f} of tasks, worst topic {worst:.2f}")
    print(f"planted (seed 7, tests) best first (predict -k 1): {report['planted_best_first']}")
    (work / "tune_ranking.json").write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
