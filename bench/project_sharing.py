"""`python -m bench.project_sharing`: does a project gain from the others' experience?

flask-history and werkzeug-history (data/sample/) are ingested into one warehouse as two
projects (`--project github.com/pallets/flask`, `--project github.com/pallets/werkzeug`)
and built. Then, per project, the walk-forward evaluation of `engram evaluate --project`
is run alone (the project's own events only, as if it had its own warehouse) and with
sharing (success borrows from every project's events strictly earlier in time: the
four-level shrinkage of engram.numeric.ranking), at three points of its history:

- early: its first 10% of events (the newest 30% of those held out),
- young: its first 25% (the newest 20% of those held out),
- all:   the whole history (the newest 5% held out, as `engram evaluate`).

Tuning the share weight (what one other project's event counts for; dbt var
project_share_weight, RankingParams.share_weight): on a window no report row looks at,
the events between 67.5% and 75% of each project's history (its first 75%, newest 10%
held out). For each weight of GRID the objective is, for the WORSE of the two projects,
the relative MRR gain plus the relative Brier gain over the project alone; the weight with
the best such worst case is chosen (0 scores exactly 0, so the chosen weight does not hurt
either project on the tuning window). --weight W skips the search and reports W.

Prints one table and, with --json PATH, writes the figures. Small: about 5 minutes on two
busy cores, most of it the ingest and build (reused from --work when already built).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench.paths import PROJECT_ROOT

SAMPLES = PROJECT_ROOT / "data" / "sample"
PROJECTS = {
    "github.com/pallets/flask": SAMPLES / "flask-history",
    "github.com/pallets/werkzeug": SAMPLES / "werkzeug-history",
}
GRID = (0.0, 0.1, 0.25, 0.5, 1.0)
TUNING = {"head": 0.75, "holdout": 0.1}  # events 67.5%..75%: in no reported window
WINDOWS = {  # name: (head fraction or None for all, holdout fraction of that head)
    "early (first 10%)": (0.1, 0.3),
    "young (first 25%)": (0.25, 0.2),
    "all (newest 5%)": (None, 0.05),
}


def warehouse(work: Path) -> Path:
    """Both histories, one project each, ingested and built (reused when built)."""
    from engram.build import build
    from ingest.loader import ingest_paths

    db = work / "engram.duckdb"
    if (work / "built").exists():
        return db
    work.mkdir(parents=True, exist_ok=True)
    for project, source in PROJECTS.items():
        print(f"ingest {source.name} as {project} ...", file=sys.stderr, flush=True)
        ingest_paths([source], db, project=project)
    print("build ...", file=sys.stderr, flush=True)
    build(db, capture=True)
    (work / "built").touch()
    return db


def run(
    reader: Any, project: str, head: float | None, holdout: float, share: bool, weight: float
) -> dict[str, Any]:
    from engram.query.evaluate import evaluate
    from engram.query.predict import ranking_params

    params = dataclasses.replace(ranking_params(), share_weight=weight)
    result = evaluate(reader, holdout, 0.9, params, project=project, share=share, head=head)
    row = result.metrics.set_index("method").loc["engram"]
    return {
        "held_out": result.counts["held_out"],
        "ranked": result.counts["ranked"],
        "mrr": float(row["mrr"]),
        "hit_at_5": float(row["hit_at_5"]),
        "brier": float(row["brier"]),
    }


def gain(alone: dict[str, Any], shared: dict[str, Any]) -> float:
    """Relative MRR gain plus relative Brier gain (lower Brier is better)."""
    return (shared["mrr"] - alone["mrr"]) / alone["mrr"] + (alone["brier"] - shared["brier"]) / (
        alone["brier"]
    )


def tune(reader: Any) -> tuple[float, list[dict[str, Any]]]:
    alone = {p: run(reader, p, TUNING["head"], TUNING["holdout"], False, 0.0) for p in PROJECTS}
    rows, best, best_score = [], 0.0, float("-inf")
    for weight in GRID:
        worst = min(
            gain(alone[p], run(reader, p, TUNING["head"], TUNING["holdout"], True, weight))
            for p in PROJECTS
        )
        rows.append({"weight": weight, "worst_project_gain": worst})
        print(f"tuning: weight {weight}: worst-project gain {worst:+.4f}", file=sys.stderr)
        if worst > best_score + 1e-12:
            best, best_score = weight, worst
    return best, rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.project_sharing", description=__doc__)
    parser.add_argument("--work", type=Path, default=PROJECT_ROOT / "artifacts" / "sharing")
    parser.add_argument("--weight", type=float, help="report this share weight, no search")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the figures here")
    args = parser.parse_args(argv)
    from engram.query.reader import Reader

    started = time.perf_counter()
    db = warehouse(args.work)
    with Reader(db) as reader:
        tuning: list[dict[str, Any]] = []
        if args.weight is None:
            weight, tuning = tune(reader)
        else:
            weight = args.weight
        report = []
        for project in PROJECTS:
            for window, (head, holdout) in WINDOWS.items():
                alone = run(reader, project, head, holdout, False, weight)
                shared = run(reader, project, head, holdout, True, weight)
                report.append(
                    {"project": project, "window": window, "alone": alone, "shared": shared}
                )
    print(f"share weight {weight} ({'given' if args.weight is not None else 'tuned'})")
    print(
        f"{'project':<28} {'window':<18} {'held':>5} "
        f"{'MRR alone':>9} {'shared':>7} {'hit@5 alone':>11} {'shared':>7} "
        f"{'Brier alone':>11} {'shared':>7}"
    )
    for row in report:
        a, s = row["alone"], row["shared"]
        print(
            f"{row['project']:<28} {row['window']:<18} {a['held_out']:>5} "
            f"{a['mrr']:>9.4f} {s['mrr']:>7.4f} {a['hit_at_5']:>11.4f} {s['hit_at_5']:>7.4f} "
            f"{a['brier']:>11.4f} {s['brier']:>7.4f}"
        )
    print(f"({time.perf_counter() - started:.0f}s)")
    if args.json:
        payload = {"share_weight": weight, "tuning": tuning, "report": report}
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
