"""Would predict have recommended what worked? A walk-forward evaluation on any warehouse.

For each event among the newest `holdout` fraction (by occurred_at), the ranking is
rebuilt from events strictly earlier than it (usage counts, success shrinkage, the past
task texts it may draw on) and asked about the event's task text. Scored:

- hit@1, hit@5 and MRR of the pattern actually used, over held-out events with a task
  text and outcome_quality >= `min_quality` (the pattern "worked"; 0 for a pattern never
  seen before the event);
- Brier score of the success estimate for the pattern actually used, over every held-out
  event with an outcome, with its skill against the global mean so far.

Baselines in the same run, from the same past: most-used patterns, a plain 10-nearest
task vote (cosine-weighted, no smoothing, padded by usage so it always ranks every
pattern), and the global success-rate ranking (each pattern's shrunk mean). The ranking
itself is engram.numeric.ranking, the code `engram predict` runs.

Context clusters (intermediate.int_contexts__clustered) come from the texts alone, over
all weeks; they carry no outcome, so using them for earlier events leaks no answer.

Per project (`project`): only that project's events are held out, and its past is its own
events (the texts its neighbours come from, its usage counts). With `share=True` the
success estimates also borrow from every project's events strictly earlier in time (the
four-level shrinkage of engram.numeric.ranking), which is what `engram predict --project`
answers with; `share=False` is the project alone, as if it had its own warehouse.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from engram.numeric.ranking import (
    DEFAULT_PARAMS,
    RankingParams,
    UsageStats,
    cluster_mix,
    full_scores,
    kernel,
    neighbour_votes,
    usage_stats,
)
from engram.query.errors import InvalidQuery, MissingMart, QueryError
from engram.query.reader import Reader
from ingest.warehouse import WarehouseError, connect_for_read

METHODS = ("engram", "nearest_10_vote", "most_used", "global_success")
BASELINE_NEIGHBOURS = 10  # the skeptic's plain vote: 10 nearest past task texts
MAX_NEIGHBOURS = 200  # most past texts any ranking looks at


@dataclass
class History:
    """Every event with an outcome, oldest first, as arrays the walk-forward slices."""

    times: np.ndarray  # occurred_at as int64 ns
    pattern: np.ndarray  # position into pattern_ids
    quality: np.ndarray
    context: np.ndarray  # row into vectors, -1 without an embedded text
    event_cluster: np.ndarray  # context cluster of the event's text, -1 without
    pattern_ids: np.ndarray
    vectors: np.ndarray  # normalized context embeddings
    context_cluster: np.ndarray  # per context row, -1 when unclustered
    context_first: np.ndarray  # index of the first event with that context
    context_events: list[np.ndarray]  # per context row: its event indices, ascending

    def head(self, n: int) -> History:
        """The first n events only: the history as it stood then (for tuning on the
        older part of a history and reporting on the newer)."""
        return History(
            self.times[:n],
            self.pattern[:n],
            self.quality[:n],
            self.context[:n],
            self.event_cluster[:n],
            self.pattern_ids,
            self.vectors,
            self.context_cluster,
            self.context_first,
            self.context_events,
        )


@dataclass
class Evaluation:
    """evaluate()'s answer: one metrics row per method, and how the run was set up."""

    metrics: pd.DataFrame
    settings: dict[str, Any]
    counts: dict[str, int]
    per_event: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        from engram.query.jsonable import records

        return {
            "settings": self.settings,
            "counts": self.counts,
            "metrics": records(self.metrics),
            "notes": self.notes,
        }


def load_history(reader: Reader, project: str | None = None) -> History:
    """Events, texts and clusters from the serving copy (or the warehouse read-only);
    only `project`'s events when given (pattern positions stay those of every project,
    so a project's history and the whole warehouse's line up)."""
    reader.require("staging.stg_contexts")
    events_sql = (
        "select pattern_id, occurred_at, outcome_quality, context_hash, project_id "
        "from staging.stg_usage_events where outcome_quality is not null "
        "and occurred_at is not null order by occurred_at, event_id"
    )
    if reader.has("staging.stg_usage_events"):
        events = reader.df(events_sql)
    else:  # the serving copy holds no events: read them from the warehouse, read-only
        try:
            con = connect_for_read(reader.db_path)
        except WarehouseError as exc:
            raise QueryError(f"evaluate needs the events: {exc}") from exc
        try:
            events = con.execute(events_sql).df()
        except duckdb.CatalogException as exc:
            raise MissingMart("staging.stg_usage_events") from exc
        finally:
            con.close()
    known = (
        reader.df("select pattern_id from marts.dim_patterns")["pattern_id"]
        if reader.has("marts.dim_patterns")
        else pd.Series([], dtype=str)
    )
    pattern_ids = np.array(sorted(set(known.astype(str)) | set(events["pattern_id"].astype(str))))
    if project is not None:
        mine = events["project_id"].astype(str) == project
        if not mine.any():
            projects = sorted(set(events["project_id"].astype(str)))
            raise InvalidQuery(f"no events of project {project!r}; projects: {projects}")
        events = events[mine].reset_index(drop=True)
    position = {p: i for i, p in enumerate(pattern_ids)}
    index = reader.index("contexts")
    row_of = {str(h): i for i, h in enumerate(index.ids)}
    context = np.array(
        [row_of.get(h, -1) if isinstance(h, str) else -1 for h in events["context_hash"]],
        dtype=np.int64,
    )
    context_cluster = np.full(len(index.ids), -1, dtype=np.int64)
    if reader.has("intermediate.int_contexts__clustered"):
        clusters = reader.df(
            "select context_hash, context_cluster_id from intermediate.int_contexts__clustered"
        )
        for h, c in zip(clusters["context_hash"], clusters["context_cluster_id"], strict=True):
            if (row := row_of.get(str(h))) is not None:
                context_cluster[row] = int(c)
    n = len(events)
    first = np.full(len(index.ids), n, dtype=np.int64)
    with_text = np.flatnonzero(context >= 0)
    np.minimum.at(first, context[with_text], with_text)
    order = with_text[np.argsort(context[with_text], kind="stable")]
    bounds = np.searchsorted(context[order], np.arange(len(index.ids) + 1))
    per_context = [order[bounds[i] : bounds[i + 1]] for i in range(len(index.ids))]
    return History(
        times=events["occurred_at"].to_numpy(dtype="datetime64[ns]").astype(np.int64),
        pattern=np.array([position[str(p)] for p in events["pattern_id"]], dtype=np.int64),
        quality=events["outcome_quality"].to_numpy(dtype=np.float64),
        context=context,
        event_cluster=np.where(context >= 0, context_cluster[np.maximum(context, 0)], -1),
        pattern_ids=pattern_ids,
        vectors=np.asarray(index.matrix, dtype=np.float32),
        context_cluster=context_cluster,
        context_first=first,
        context_events=per_context,
    )


def _rank_of(scores: np.ndarray, target: int) -> int:
    """1-based rank of target when sorted by score desc, ties by position (as rank())."""
    s = scores[target]
    return int(1 + np.sum(scores > s) + np.sum(scores[:target] == s))


@dataclass
class Neighbourhood:
    """The past task texts nearest one event's text, as rank() takes them."""

    similarity: np.ndarray
    cluster: np.ndarray
    entry_neighbour: np.ndarray
    entry_pattern: np.ndarray
    entry_events: np.ndarray


def neighbourhood(history: History, event: int, end: int, n: int) -> Neighbourhood:
    """The n past texts (first used before index `end`) most similar to event's text,
    with the patterns used there in events[:end]."""
    return neighbourhood_of(history, history.vectors[history.context[event]], end, n)


def neighbourhood_of(history: History, vector: np.ndarray, end: int, n: int) -> Neighbourhood:
    """The n past texts (first used before index `end`) most similar to a normalized
    query vector, with the patterns used there in events[:end]."""
    sims = history.vectors @ np.asarray(vector, dtype=np.float32)
    sims = np.where(history.context_first < end, sims, -np.inf)
    n = min(n, int(np.sum(history.context_first < end)))
    if n == 0:
        empty = np.zeros(0, np.int64)
        return Neighbourhood(np.zeros(0), empty, empty, empty, np.zeros(0))
    top = np.argpartition(-sims, n - 1)[:n]
    top = top[np.argsort(-sims[top], kind="stable")]
    entries_j, entries_p, entries_n = [], [], []
    for j, c in enumerate(top):
        idx = history.context_events[c]
        idx = idx[idx < end]
        pats, counts = np.unique(history.pattern[idx], return_counts=True)
        entries_j.append(np.full(len(pats), j))
        entries_p.append(pats)
        entries_n.append(counts)
    return Neighbourhood(
        sims[top].astype(np.float64),
        history.context_cluster[top],
        np.concatenate(entries_j),
        np.concatenate(entries_p),
        np.concatenate(entries_n).astype(np.float64),
    )


def model_scores(
    stats: UsageStats, hood: Neighbourhood, params: RankingParams
) -> tuple[np.ndarray, np.ndarray]:
    """engram's (score, success) for every pattern given a task's neighbourhood: the
    same steps as predict (votes of the nearest `params.neighbours`, their clusters)."""
    k = params.neighbours
    keep = hood.entry_neighbour < k
    vp, vw = neighbour_votes(
        hood.similarity[:k],
        hood.entry_neighbour[keep],
        hood.entry_pattern[keep],
        hood.entry_events[keep],
        params.bandwidth,
    )
    weights = kernel(hood.similarity[:k], params.bandwidth)
    has = hood.cluster[:k] >= 0
    cids, cws = cluster_mix(hood.cluster[:k][has], weights[has], params.n_clusters)
    return full_scores(stats, vp, vw, cids, cws, params)


def nearest_vote_scores(stats: UsageStats, hood: Neighbourhood) -> np.ndarray:
    """The skeptic's baseline: cosine-weighted vote of the 10 nearest past texts (each
    text's weight split over its patterns), ties and unvoted patterns by usage."""
    keep = hood.entry_neighbour < BASELINE_NEIGHBOURS
    j = hood.entry_neighbour[keep]
    events = hood.entry_events[keep]
    per = np.bincount(j, weights=events, minlength=BASELINE_NEIGHBOURS)
    w = np.clip(hood.similarity[j], 0.0, None) * events / np.maximum(per[j], 1e-12)
    votes = np.bincount(hood.entry_pattern[keep], weights=w, minlength=stats.n_patterns)
    usage = stats.n_events / (stats.n_events.sum() + 1.0)
    return votes + 1e-9 * usage


@dataclass
class Case:
    """One held-out event with what was known just before it."""

    event: int
    stats: UsageStats
    hood: Neighbourhood | None  # None: the event has no task text


def prepare(history: History, holdout: float, shared: History | None = None) -> list[Case]:
    """The held-out events (newest `holdout` fraction), each with the usage statistics
    of the events strictly earlier in time and its text's past neighbourhood. Separate
    from scoring so a parameter search reuses it. `shared` (every project's history,
    same pattern positions) attaches every project's earlier usage to each case's stats,
    so success borrows across projects."""
    if not 0.0 < holdout < 1.0:
        raise InvalidQuery(f"holdout must be a fraction in (0, 1), got {holdout}")
    n = len(history.times)
    n_held = math.ceil(holdout * n) if n else 0
    if n_held == 0 or n_held >= n:
        raise InvalidQuery(f"{n} events with an outcome: too few to hold out {holdout:.0%}")
    # an event is predicted from events strictly earlier in time (not just earlier rows)
    ends = np.searchsorted(history.times, history.times, side="left")
    cases: list[Case] = []
    stats: UsageStats | None = None
    stats_end = -1
    shared_ends = (
        np.searchsorted(shared.times, history.times, side="left") if shared is not None else None
    )
    case_stats: UsageStats | None = None
    shared_end = -1
    for i in range(n - n_held, n):
        end = int(ends[i])
        if end == 0:
            continue
        if end != stats_end:
            stats = usage_stats(
                len(history.pattern_ids),
                history.pattern[:end],
                history.event_cluster[:end],
                history.quality[:end],
            )
            stats_end = end
            case_stats, shared_end = stats, -1
        assert stats is not None and case_stats is not None
        if shared is not None and shared_ends is not None and int(shared_ends[i]) != shared_end:
            shared_end = int(shared_ends[i])
            everyone = usage_stats(
                len(shared.pattern_ids),
                shared.pattern[:shared_end],
                shared.event_cluster[:shared_end],
                shared.quality[:shared_end],
            )
            case_stats = replace(stats, memo={}, shared=everyone)
        hood = neighbourhood(history, i, end, MAX_NEIGHBOURS) if history.context[i] >= 0 else None
        cases.append(Case(i, case_stats, hood))
    return cases


def score_cases(
    history: History,
    cases: list[Case],
    params: RankingParams,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Per held-out event: rank of the used pattern under each method, and the success
    estimates for it (engram's, the pattern mean's, the global mean's)."""
    rows: list[dict[str, Any]] = []
    s = params.prior_strength
    for count, case in enumerate(cases):
        i, stats, hood = case.event, case.stats, case.hood
        used = int(history.pattern[i])
        m_p = (stats.sum_quality + s * stats.prior_mean) / (stats.n_events + s)
        seen = bool(stats.n_events[used] > 0)
        row: dict[str, Any] = {
            "event": i,
            "pattern_id": str(history.pattern_ids[used]),
            "quality": float(history.quality[i]),
            "has_text": hood is not None,
            "seen_before": seen,
            "p_global_mean": stats.global_mean,
            "p_pattern_mean": float(m_p[used]),
        }
        if hood is not None:
            score, success = model_scores(stats, hood, params)
            ranked = {
                "engram": score,
                "nearest_10_vote": nearest_vote_scores(stats, hood),
                "most_used": stats.n_events,
                "global_success": m_p,
            }
            for method, scores in ranked.items():
                row[f"rank_{method}"] = _rank_of(scores, used) if seen else math.inf
        else:
            empty = np.zeros(0)
            _, success = full_scores(stats, empty, empty, empty, empty, params)
        row["p_engram"] = float(success[used])
        rows.append(row)
        if progress is not None:
            progress(count + 1, len(cases))
    return pd.DataFrame(rows)


def evaluate(
    reader: Reader,
    holdout: float = 0.05,
    min_quality: float = 0.9,
    params: RankingParams = DEFAULT_PARAMS,
    *,
    progress: Callable[[int, int], None] | None = None,
    project: str | None = None,
    share: bool = True,
    head: float | None = None,
) -> Evaluation:
    """Walk forward over the newest `holdout` of events; see the module docstring.
    `project`: hold out and learn from that project's events only, borrowing success
    from the other projects when `share`. `head` (a fraction): evaluate the history as
    it stood after its first `head` of events (an early cut-off)."""
    if not 0.0 <= min_quality <= 1.0:
        raise InvalidQuery(f"min_quality must be in [0, 1], got {min_quality}")
    if head is not None and not 0.0 < head <= 1.0:
        raise InvalidQuery(f"head must be a fraction in (0, 1], got {head}")
    started = time.perf_counter()
    history = load_history(reader, project)
    if head is not None:
        history = history.head(max(math.ceil(head * len(history.times)), 1))
    shared = load_history(reader) if project is not None and share else None
    cases = prepare(history, holdout, shared)
    per_event = score_cases(history, cases, params, progress)
    metrics, counts = score_events(per_event, min_quality)
    counts.update({"events": len(history.times), "held_out": len(cases)})
    notes: list[str] = []
    if (history.context_cluster < 0).all():
        notes.append(
            "no context clusters (intermediate.int_contexts__clustered): cluster level skipped"
        )
    settings = {
        "project": project,
        "share": bool(project is not None and share),
        "head": head,
        "holdout": holdout,
        "min_quality": min_quality,
        "params": asdict(params),
        "seconds": round(time.perf_counter() - started, 2),
    }
    return Evaluation(metrics, settings, counts, per_event, notes)


def score_events(
    per_event: pd.DataFrame, min_quality: float
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Metrics from the per-event ranks and estimates (pure: the tests recompute it)."""
    ranked = per_event[per_event["has_text"] & (per_event["quality"] >= min_quality)]
    q = per_event["quality"].to_numpy(dtype=float)

    def brier(column: str) -> float:
        return float(np.mean((per_event[column].to_numpy(dtype=float) - q) ** 2))

    b_global = brier("p_global_mean")
    rows = []
    for method in METHODS:
        r = ranked[f"rank_{method}"].to_numpy(dtype=float) if len(ranked) else np.zeros(0)
        row = {
            "method": method,
            "hit_at_1": float(np.mean(r <= 1)) if len(r) else None,
            "hit_at_5": float(np.mean(r <= 5)) if len(r) else None,
            "mrr": float(np.mean(1.0 / r)) if len(r) else None,
        }
        column = {"engram": "p_engram", "global_success": "p_pattern_mean"}.get(method)
        if method == "most_used":
            column = None
        row["brier"] = brier(column) if column else None
        row["brier_skill"] = 1.0 - row["brier"] / b_global if column and b_global > 0 else None
        rows.append(row)
    rows.append(
        {
            "method": "global_mean (Brier reference)",
            "hit_at_1": None,
            "hit_at_5": None,
            "mrr": None,
            "brier": b_global,
            "brier_skill": 0.0,
        }
    )
    counts = {"ranked": len(ranked), "brier_events": len(per_event)}
    return pd.DataFrame(rows), counts
