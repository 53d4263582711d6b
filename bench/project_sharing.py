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

Why sharing can help at all (printed first, "overlap"): per window, how many of the
project's (kind of task, pattern) cells and held-out events have evidence in the other
project at that time, and how well a pattern's success relative to its project's mean
agrees between the two projects (against the same agreement between the two halves of
one project's history).

The rule: each other project's event counts w(n) = share_weight * fade / (fade + n) of one
of the project's own, n being the project's own events at that level (cell, pattern,
all); fade = CONSTANT is the earlier rule (a fixed weight), fade = 0 borrows only where
the project has no events of its own. Tuning (share_weight, fade): on two windows no
report row looks at, the events between 12.5% and 20% of each project's history (early,
where sharing should help) and between 67.5% and 75% (late, where it must not hurt). For
each grid point the objective is, for the WORSE of the two projects, the relative MRR
gain plus the relative Brier gain over the project alone (its mean over the two windows);
among the points that worsen neither MRR nor Brier for any project in either window
("must not hurt"), the one with the best such worst case is chosen, and weight 0 (the
projects apart) when none qualifies. The point with the best worst case ignoring that
condition is reported too, and each project's own rule (the best that worsens nothing in
its own tuning windows: a diagnostic, the marts take one weight), beside the earlier rule
(weight 0.5, no fading).
--weight W --fade K skips the search and reports that rule.

Noise: every difference shared - alone comes with a 95% paired bootstrap interval over the
window's held-out events (BOOTSTRAP resamples, fixed seed), the same resample for MRR
(over the ranked events) and Brier (over all of them). Verdict per row: "helps" when an
interval lies wholly on the better side and neither on the worse, "hurts" when one lies
wholly on the worse side, otherwise "neutral" (the point estimates are printed as well).

The walk-forward cases (the usage before each held-out event, its past neighbourhood)
are prepared once per window and scored for every rule: "alone" is the same cases with
the other projects' usage taken away, which the ranking scores exactly as a project in
its own warehouse (tests/test_projects.py).

Prints the tables and, with --json PATH, writes the figures. On two busy cores the ingest
and build took about 3 minutes (reused from --work afterwards) and the evaluation 1.5-2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.paths import PROJECT_ROOT

SAMPLES = PROJECT_ROOT / "data" / "sample"
PROJECTS = {
    "github.com/pallets/flask": SAMPLES / "flask-history",
    "github.com/pallets/werkzeug": SAMPLES / "werkzeug-history",
}
CONSTANT = 1e12  # fade so large that the weight never fades: the earlier, fixed-weight rule
GRID_WEIGHT = (0.25, 0.5, 1.0, 2.0)
GRID_FADE = (0.0, 5.0, 20.0, 100.0, CONSTANT)
TUNING = {  # name: (head, holdout) as WINDOWS; events in no reported window
    "tune early (12.5-20%)": (0.2, 0.375),
    "tune late (67.5-75%)": (0.75, 0.1),
}
WINDOWS = {  # name: (head fraction or None for all, holdout fraction of that head)
    "early (first 10%)": (0.1, 0.3),
    "young (first 25%)": (0.25, 0.2),
    "all (newest 5%)": (None, 0.05),
}
MIN_QUALITY = 0.9  # a held-out event counts for MRR when its pattern worked (as evaluate)
BOOTSTRAP = 2000


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


def fade_name(fade: float) -> str:
    """How a fade is printed: "none" for the fixed weight (CONSTANT)."""
    return "none" if fade >= CONSTANT else f"{fade:g}"


@dataclasses.dataclass
class Window:
    """One project's walk-forward cases at one point of its history, prepared once."""

    history: Any
    shared: list[Any]  # cases with every project's earlier usage attached
    alone: list[Any]  # the same cases, the project's own usage only

    def score(self, params: Any, share: bool) -> Any:
        from engram.query.evaluate import score_cases

        return score_cases(self.history, self.shared if share else self.alone, params)


def prepare_window(
    histories: dict[str, Any], project: str, head: float | None, holdout: float
) -> Window:
    """The project's cases at one cut of its history, with and without the others."""
    from engram.query.evaluate import prepare

    history = histories[project]
    if head is not None:
        history = history.head(max(math.ceil(head * len(history.times)), 1))
    shared = prepare(history, holdout, histories["*"])
    alone = [
        dataclasses.replace(c, stats=dataclasses.replace(c.stats, memo={}, shared=None))
        for c in shared
    ]
    return Window(history, shared, alone)


def metrics(per_event: Any) -> dict[str, Any]:
    """engram's MRR, hit@5 and Brier from scored cases, as `engram evaluate` reports them."""
    from engram.query.evaluate import score_events

    table, counts = score_events(per_event, MIN_QUALITY)
    row = table.set_index("method").loc["engram"]
    return {
        "held_out": len(per_event),
        "ranked": counts["ranked"],
        "mrr": float(row["mrr"]),
        "hit_at_5": float(row["hit_at_5"]),
        "brier": float(row["brier"]),
    }


def paired(alone: Any, shared: Any, seed: int = 17) -> dict[str, Any]:
    """Differences shared - alone (MRR, Brier) with 95% paired bootstrap intervals over
    the held-out events: the same events resampled for both arms."""
    q = alone["quality"].to_numpy(float)
    ranked = (alone["has_text"] & (alone["quality"] >= MIN_QUALITY)).to_numpy(bool)
    rr_a = np.where(ranked, 1.0 / alone["rank_engram"].to_numpy(float), 0.0)
    rr_s = np.where(ranked, 1.0 / shared["rank_engram"].to_numpy(float), 0.0)
    d_rr = rr_s - rr_a
    p_a, p_s = alone["p_engram"].to_numpy(float), shared["p_engram"].to_numpy(float)
    d_sq = (p_s - q) ** 2 - (p_a - q) ** 2
    rng = np.random.default_rng(seed)
    n = len(q)
    idx = rng.integers(0, n, size=(BOOTSTRAP, n))
    n_ranked = ranked[idx].sum(axis=1)
    mrr = d_rr[idx].sum(axis=1) / np.maximum(n_ranked, 1)
    brier = d_sq[idx].mean(axis=1)
    out = {
        "d_mrr": float(d_rr[ranked].mean()) if ranked.any() else 0.0,
        "d_mrr_ci": [float(x) for x in np.percentile(mrr, [2.5, 97.5])],
        "d_brier": float(d_sq.mean()),
        "d_brier_ci": [float(x) for x in np.percentile(brier, [2.5, 97.5])],
        "events_changed_rank": int(np.sum(np.abs(d_rr) > 1e-12)),
    }
    better = out["d_mrr_ci"][0] > 0 or out["d_brier_ci"][1] < 0
    worse = out["d_mrr_ci"][1] < 0 or out["d_brier_ci"][0] > 0
    out["verdict"] = "hurts" if worse else "helps" if better else "neutral"
    return out


def gain(alone: dict[str, Any], shared: dict[str, Any]) -> float:
    """Relative MRR gain plus relative Brier gain (lower Brier is better)."""
    return (shared["mrr"] - alone["mrr"]) / alone["mrr"] + (alone["brier"] - shared["brier"]) / (
        alone["brier"]
    )


def tune(
    windows: dict[str, Window], base: Any
) -> tuple[tuple[float, float], tuple[float, float], list[dict]]:
    """(the rule chosen, the best ignoring "must not hurt", every grid point's figures).
    Chosen: the (share_weight, fade) whose worse project gains most, among those
    that worsen neither MRR nor Brier anywhere in the tuning windows; weight 0 (the
    projects apart, gain exactly 0) when none does."""
    alone = {p: metrics(w.score(base, False)) for p, w in windows.items()}
    rows: list[dict[str, Any]] = []
    best, best_score = (0.0, CONSTANT), 0.0
    free, free_score = (0.0, CONSTANT), float("-inf")
    for weight in GRID_WEIGHT:
        for fade in GRID_FADE:
            params = dataclasses.replace(base, share_weight=weight, share_fade=fade)
            shared = {p: metrics(w.score(params, True)) for p, w in windows.items()}
            gains = {p: gain(alone[p], shared[p]) for p in windows}
            harmless = all(
                shared[p]["mrr"] >= alone[p]["mrr"] and shared[p]["brier"] <= alone[p]["brier"]
                for p in windows
            )
            # per project, its mean gain over the tuning windows (werkzeug's early one
            # predates flask: nothing to borrow, gain 0 whatever the rule), then the worse
            worst = min(
                float(np.mean([g for key, g in gains.items() if key.startswith(project)]))
                for project in {key.split(" ")[0] for key in gains}
            )
            rows.append(
                {
                    "weight": weight,
                    "fade": fade,
                    "gains": gains,
                    "worst": worst,
                    "harmless": harmless,
                    "d_mrr": {p: shared[p]["mrr"] - alone[p]["mrr"] for p in windows},
                    "d_brier": {p: shared[p]["brier"] - alone[p]["brier"] for p in windows},
                }
            )
            print(
                f"tuning: weight {weight:<5g} fade {fade_name(fade):>5}: "
                + " ".join(f"{p} {g:+.4f}" for p, g in gains.items())
                + f"  worst {worst:+.4f}{'' if harmless else '  (worsens one)'}",
                file=sys.stderr,
                flush=True,
            )
            if harmless and worst > best_score + 1e-12:
                best, best_score = (weight, fade), worst
            if worst > free_score + 1e-12:
                free, free_score = (weight, fade), worst
    return best, free, rows


def per_project(rows: list[dict[str, Any]]) -> dict[str, tuple[float, float]]:
    """Each project's own rule, from its own tuning windows only (a weight chosen per
    project by its own walk-forward, on windows no report row uses): among the grid
    points that worsen neither MRR nor Brier in ITS windows, the one with its best mean
    gain; weight 0 if none. A diagnostic: the marts take one weight for all projects."""
    chosen = {}
    for project in PROJECTS:
        short = project.split("/")[-1]
        best, best_score = (0.0, CONSTANT), 0.0
        for row in rows:
            keys = [k for k in row["gains"] if k.startswith(short + " ")]
            harmless = all(row["d_mrr"][k] >= 0 and row["d_brier"][k] <= 0 for k in keys)
            score = float(np.mean([row["gains"][k] for k in keys]))
            if harmless and score > best_score + 1e-12:
                best, best_score = (row["weight"], row["fade"]), score
        chosen[project] = best
    return chosen


def overlap(histories: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Evidence the other project holds for each window, and whether it carries signal."""
    everyone = histories["*"]
    n_patterns = len(everyone.pattern_ids)
    windows = dict(WINDOWS)
    windows.update(TUNING)
    rows = []
    for project in PROJECTS:
        full = histories[project]
        for name, (head, holdout) in windows.items():
            n = len(full.times) if head is None else max(math.ceil(head * len(full.times)), 1)
            start = n - math.ceil(holdout * n)
            cut = int(np.searchsorted(everyone.times, full.times[start], side="left"))
            own_cells: dict[tuple[int, int], int] = {}
            for key in zip(full.event_cluster[:start], full.pattern[:start], strict=True):
                if key[0] >= 0:
                    own_cells[key] = own_cells.get(key, 0) + 1
            all_cells: dict[tuple[int, int], int] = {}
            for key in zip(everyone.event_cluster[:cut], everyone.pattern[:cut], strict=True):
                all_cells[key] = all_cells.get(key, 0) + 1
            other_in_cell = [all_cells.get(k, 0) - v for k, v in own_cells.items()]
            # per held-out event: the project's own and the other's events before it, for
            # the pattern used and for its (cluster, pattern) cell
            own_end = np.searchsorted(full.times, full.times[start:n], side="left")
            all_end = np.searchsorted(everyone.times, full.times[start:n], side="left")
            per = []
            for j, i in enumerate(range(start, n)):
                p, c = full.pattern[i], full.event_cluster[i]
                mine = full.pattern[: own_end[j]] == p
                theirs = everyone.pattern[: all_end[j]] == p
                own_p, other_p = int(mine.sum()), int(theirs.sum() - mine.sum())
                own_c = int((mine & (full.event_cluster[: own_end[j]] == c)).sum())
                all_c = int((theirs & (everyone.event_cluster[: all_end[j]] == c)).sum())
                per.append((own_p, other_p, own_c, all_c - own_c, c >= 0))
            a = np.array(per, dtype=float)
            clustered = a[a[:, 4] == 1]
            rows.append(
                {
                    "project": project,
                    "window": name,
                    "held_out": n - start,
                    "own_past": start,
                    "other_past": cut - start,
                    "own_cells": len(own_cells),
                    "cells_with_other": int(sum(o >= 1 for o in other_in_cell)),
                    "cells_with_other_5": int(sum(o >= 5 for o in other_in_cell)),
                    "events_pattern_other": float(np.mean(a[:, 1] >= 1)),
                    "median_pattern_own": float(np.median(a[:, 0])),
                    "median_pattern_other": float(np.median(a[:, 1])),
                    "events_cell_own": float(np.mean(clustered[:, 2] >= 1)),
                    "events_cell_other": float(np.mean(clustered[:, 3] >= 1)),
                }
            )

    def relative(pattern: np.ndarray, quality: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = np.bincount(pattern, minlength=n_patterns).astype(float)
        s = np.bincount(pattern, weights=quality, minlength=n_patterns)
        return n, s / np.maximum(n, 1) - quality.mean()

    signal = []
    (fn, fr), (wn, wr) = (relative(histories[p].pattern, histories[p].quality) for p in PROJECTS)
    for least in (5, 20):
        both = (fn >= least) & (wn >= least)
        signal.append(
            {
                "between": "flask vs werkzeug",
                "min_events": least,
                "patterns": int(both.sum()),
                "corr": float(np.corrcoef(fr[both], wr[both])[0, 1]),
            }
        )
    for project in PROJECTS:
        h = histories[project]
        half = len(h.times) // 2
        an, ar = relative(h.pattern[:half], h.quality[:half])
        bn, br = relative(h.pattern[half:], h.quality[half:])
        for least in (5, 20):
            both = (an >= least) & (bn >= least)
            signal.append(
                {
                    "between": f"{project.split('/')[-1]} 1st vs 2nd half",
                    "min_events": least,
                    "patterns": int(both.sum()),
                    "corr": float(np.corrcoef(ar[both], br[both])[0, 1]),
                }
            )
    return rows, signal


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.project_sharing", description=__doc__)
    parser.add_argument("--work", type=Path, default=PROJECT_ROOT / "artifacts" / "sharing")
    parser.add_argument("--weight", type=float, help="report this share weight, no search")
    parser.add_argument("--fade", type=float, default=CONSTANT, help="with --weight")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the figures here")
    args = parser.parse_args(argv)
    from engram.query.evaluate import load_history
    from engram.query.predict import ranking_params
    from engram.query.reader import Reader

    started = time.perf_counter()
    db = warehouse(args.work)
    base = ranking_params()
    with Reader(db) as reader:
        histories = {p: load_history(reader, p) for p in PROJECTS}
        histories["*"] = load_history(reader)
    overlaps, signal = overlap(histories)
    print("overlap: the other project's evidence at each window (held-out events)")
    print(
        f"{'project':<9} {'window':<18} {'held':>4} {'own past':>8} {'other past':>10} "
        f"{'own cells':>9} {'w/ other':>8} {'>=5':>4} {'ev: pat other':>13} "
        f"{'med own/other':>13} {'cell own':>8} {'cell other':>10}"
    )
    for o in overlaps:
        print(
            f"{o['project'].split('/')[-1]:<9} {o['window']:<18} {o['held_out']:>4} "
            f"{o['own_past']:>8} {o['other_past']:>10} {o['own_cells']:>9} "
            f"{o['cells_with_other']:>8} {o['cells_with_other_5']:>4} "
            f"{o['events_pattern_other']:>13.0%} "
            f"{o['median_pattern_own']:>6.0f}/{o['median_pattern_other']:<6.0f} "
            f"{o['events_cell_own']:>8.0%} {o['events_cell_other']:>10.0%}"
        )
    print("signal: correlation of a pattern's mean quality minus its project's mean")
    for s in signal:
        print(
            f"  {s['between']:<26} patterns with >= {s['min_events']:>2} events in both: "
            f"{s['patterns']:>3}, r = {s['corr']:+.3f}"
        )
    sys.stdout.flush()
    tuning: list[dict[str, Any]] = []
    if args.weight is None:
        prepared = {
            f"{p.split('/')[-1]} {name.split(' ')[1]}": prepare_window(histories, p, *cut)
            for p in PROJECTS
            for name, cut in TUNING.items()
        }
        (weight, fade), (free_weight, free_fade), tuning = tune(prepared, base)
        own = per_project(tuning)
        del prepared
    else:
        weight, fade = args.weight, args.fade
        free_weight, free_fade = weight, fade
        own = {p: (weight, fade) for p in PROJECTS}

    def rule(w: float, k: float) -> Any:
        return dataclasses.replace(base, share_weight=w, share_fade=k)

    rules = {
        "chosen": {p: rule(weight, fade) for p in PROJECTS},
        "best_ignoring_harm": {p: rule(free_weight, free_fade) for p in PROJECTS},
        "per_project": {p: rule(*own[p]) for p in PROJECTS},
        "earlier_rule": {p: rule(0.5, CONSTANT) for p in PROJECTS},
    }
    report = []
    for project in PROJECTS:
        for window, (head, holdout) in WINDOWS.items():
            prepared_window = prepare_window(histories, project, head, holdout)
            alone_events = prepared_window.score(base, False)
            row: dict[str, Any] = {"project": project, "window": window}
            row["alone"] = metrics(alone_events)
            for name, params in rules.items():
                events = prepared_window.score(params[project], True)
                row[name] = metrics(events)
                row[f"{name}_diff"] = paired(alone_events, events)
            report.append(row)
            print(f"scored {project} {window}", file=sys.stderr, flush=True)
    source = "given" if args.weight is not None else "tuned, must not hurt"
    titles = {
        "chosen": f"share weight {weight:g}, fade {fade_name(fade)} ({source})",
        "best_ignoring_harm": f"share weight {free_weight:g}, fade {fade_name(free_fade)} "
        "(best worst-case gain on the tuning windows, ignoring must-not-hurt)",
        "per_project": "each project's own rule, tuned on its own windows: "
        + ", ".join(
            f"{p.split('/')[-1]} weight {w:g} fade {fade_name(k)}" for p, (w, k) in own.items()
        ),
        "earlier_rule": "share weight 0.5, fade none (the earlier rule)",
    }
    for name, title in titles.items():
        print(f"\nrule: {title}")
        print(
            f"{'project':<9} {'window':<18} {'held':>4} {'ranked':>6} "
            f"{'MRR alone':>9} {'shared':>7} {'dMRR [95% CI]':>26} "
            f"{'Brier alone':>11} {'shared':>7} {'dBrier [95% CI]':>28} verdict"
        )
        for row in report:
            a, s, d = row["alone"], row[name], row[f"{name}_diff"]
            print(
                f"{row['project'].split('/')[-1]:<9} {row['window']:<18} {a['held_out']:>4} "
                f"{a['ranked']:>6} {a['mrr']:>9.4f} {s['mrr']:>7.4f} "
                f"{d['d_mrr']:>+8.4f} [{d['d_mrr_ci'][0]:+.4f}, {d['d_mrr_ci'][1]:+.4f}] "
                f"{a['brier']:>11.4f} {s['brier']:>7.4f} "
                f"{d['d_brier']:>+8.5f} [{d['d_brier_ci'][0]:+.5f}, {d['d_brier_ci'][1]:+.5f}] "
                f"{d['verdict']}"
            )
    print(f"({time.perf_counter() - started:.0f}s)")
    if args.json:
        payload = {
            "share_weight": weight,
            "share_fade": fade,
            "best_ignoring_harm": {"share_weight": free_weight, "share_fade": free_fade},
            "per_project": {p: {"share_weight": w, "share_fade": k} for p, (w, k) in own.items()},
            "overlap": overlaps,
            "signal": signal,
            "tuning": tuning,
            "report": report,
        }
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
