"""What patterns fit this task and work? (README "How predict ranks")

predict() finds the past task texts nearest the task, and hands their patterns, their
context clusters and the warehouse's usage counts (marts.pattern_predictions: events and
outcome quality per context cluster and pattern) to engram.numeric.ranking, which scores
every known pattern as relevance x success^exponent. The same ranking code is what
`engram evaluate` walks forward over history, so its figures describe these answers.

Per project (`project`): relevance comes from that project's own usage (its past task
texts, its cells), and success borrows from the other projects in four levels (project
cell -> other projects' cell -> pattern -> global; marts.pattern_project_predictions and
engram.numeric.ranking). A row whose success leans on other projects says so in its
`borrowed` column ("borrowed: 34 uses in 2 other projects"). project None (or "*") is the
pooled, cross-project view.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from engram.numeric.posterior import beta_interval
from engram.numeric.ranking import (
    DEFAULT_PARAMS,
    Ranked,
    RankingParams,
    UsageStats,
    cluster_mix,
    kernel,
    neighbour_votes,
    prior_mean,
    rank,
)
from engram.project import dbt_vars
from engram.query.errors import InvalidQuery, check_k
from engram.query.index import normalize
from engram.query.jsonable import records
from engram.query.reader import Reader
from ingest.project_identity import ALL_PROJECTS, current_project
from ingest.warehouse import sql_string

NEAREST_TASKS_SHOWN = 3  # past task texts listed per row as what it drew on


def prior_strength() -> float:
    """Pseudo-events added to a prior's own events: dbt var prediction_prior_strength."""
    return float(dbt_vars()["prediction_prior_strength"])


def prior_mean_steps() -> int:
    """The global mean as a prior is rounded to 1 / this: dbt var prior_mean_steps."""
    return int(dbt_vars()["prior_mean_steps"])


def credible_mass() -> float:
    """Mass of the central interval reported as ci_low..ci_high: var prediction_interval."""
    return float(dbt_vars()["prediction_interval"])


@dataclass
class Prediction:
    """predict()'s answer: ranked patterns, and the past contexts and clusters behind it."""

    task: str
    patterns: pd.DataFrame
    evidence: pd.DataFrame
    clusters: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    project: str | None = None  # the project answered for; None: every project pooled

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "project": self.project,
            "predictions": records(self.patterns),
            "evidence": records(self.evidence),
            "clusters": records(self.clusters),
            "notes": self.notes,
        }


def global_mean(reader: Reader) -> float:
    """Event-weighted mean outcome quality over all patterns, on the prior's grid
    (ranking.prior_mean, as pattern_predictions shrinks toward it): the prior of last
    resort."""
    if reader.cache.get("global_mean") is None:
        value = None
        if reader.has("marts.dim_patterns"):
            value = reader.con.execute(
                "select sum(success_rate * usage_count) / nullif(sum(usage_count), 0) "
                "from marts.dim_patterns where success_rate is not null"
            ).fetchone()[0]  # type: ignore[index]
        exact = float(value) if value is not None else 0.5
        reader.cache["global_mean"] = prior_mean(exact, prior_mean_steps())
    return reader.cache["global_mean"]


def cluster_centroids(reader: Reader) -> tuple[np.ndarray, np.ndarray, list[str]]:
    if reader.cache.get("centroids") is None:
        frame = reader.df(
            "select context_cluster_id, label, centroid from marts.context_clusters "
            "where centroid is not null order by context_cluster_id"
        )
        matrix = (
            normalize(np.stack(frame["centroid"].to_numpy()))
            if len(frame)
            else np.zeros((0, 384), np.float32)
        )
        reader.cache["centroids"] = (
            frame["context_cluster_id"].to_numpy(),
            matrix,
            frame["label"].astype(str).tolist(),
        )
    return reader.cache["centroids"]


def ranking_params(params: RankingParams | None = None) -> RankingParams:
    """The ranking's knobs, with the success shrinkage of the dbt var
    prediction_prior_strength (the one pattern_predictions and prediction_backtest use)
    and the dbt vars project_share_weight and project_share_fade
    (pattern_project_predictions')."""
    return replace(
        params or DEFAULT_PARAMS,
        prior_strength=prior_strength(),
        share_weight=float(dbt_vars()["project_share_weight"]),
        share_fade=float(dbt_vars()["project_share_fade"]),
    )


def pooled(project: str | None) -> bool:
    """Whether `project` asks for the cross-project view (None or "*")."""
    return project is None or project == ALL_PROJECTS


def projects(reader: Reader) -> list[str]:
    """The projects with events in the warehouse, by name."""
    if reader.cache.get("projects") is None:
        # int_project_priors: a row per project with events (the serving copy's
        # pattern_project_predictions is a view that joins it: 5x slower to list)
        sources = (
            "intermediate.int_project_priors",
            "marts.pattern_project_predictions",
            "staging.stg_usage_events",
        )
        for source in sources:
            if reader.has(source):
                rows = reader.rows(f"select distinct project_id from {source} order by 1")
                reader.cache["projects"] = [str(r[0]) for r in rows]
                break
        else:
            reader.cache["projects"] = []
    return reader.cache["projects"]


def resolve_project(reader: Reader, project: str | None) -> tuple[str | None, list[str]]:
    """(the project to answer for, None for every project pooled; notes saying why).

    "*" asks for the pooled view. None means the current project (ingest's rule:
    $ENGRAM_PROJECT, else the git remote of the working directory, else `default`).
    A project answers on its own (borrowing from the others) only when the warehouse
    holds events of it and of another project; otherwise the pooled answer is the same
    or better (a project without events has no relevance of its own to rank by)."""
    if project == ALL_PROJECTS:
        return None, []
    asked = project is not None
    name = current_project(project)
    known = projects(reader)
    if name in known and len(known) > 1:
        return name, []
    if asked and name not in known:
        return None, [
            f"project {name!r} has no events here: answering across all projects "
            f"({', '.join(known) or 'none'})"
        ]
    return None, []


def usage(reader: Reader, project: str | None = None) -> tuple[np.ndarray, UsageStats]:
    """(pattern ids, UsageStats), loaded once per Reader and project.

    Cells come from marts.pattern_predictions (events and mean quality per context cluster
    and pattern, events without a task text in cluster -1); before a build, from the
    events themselves with every event in cluster -1. For one project (module
    docstring): that project's cells (the serving copy's int_pattern_project_cells, else
    marts.pattern_project_predictions), with every project's attached as `shared` when
    other projects have events."""
    key = "usage" if pooled(project) else f"usage:{project}"
    cached = reader.cache.get(key)
    if cached is not None:
        return cached
    ids, everyone = _pooled_usage(reader)
    if pooled(project):
        return ids, everyone
    index = reader.cache["usage_index"]
    if reader.has("intermediate.int_pattern_project_cells"):
        # the project's own sums, read where the serving copy stores them (its
        # pattern_project_predictions is a view computing every level from these)
        source = "intermediate.int_pattern_project_cells"
        select = "context_cluster_id as cluster, pattern_id, n_events::double as n, "
        select += "sum_quality::double as s"
        group = ""
    elif reader.has("marts.pattern_project_predictions"):
        source = "marts.pattern_project_predictions"
        select = "context_cluster_id as cluster, pattern_id, n_events::double as n, "
        select += "n_events * mean_quality as s"
        group = ""
    else:
        source = "staging.stg_usage_events"
        select = "-1 as cluster, pattern_id, count(*)::double as n, sum(outcome_quality) as s"
        group = "and outcome_quality is not null group by pattern_id"
    cells = reader.df(f"select {select} from {source} where project_id = ? {group}", [project])
    others = reader.rows(f"select 1 from {source} where project_id <> ? limit 1", [project])
    cells = cells[index.get_indexer(cells["pattern_id"].astype(str)) >= 0]
    own = _stats(cells, index)
    stats = replace(own, shared=everyone) if others else everyone
    reader.cache[key] = (ids, stats)
    return ids, stats


def _stats(cells: pd.DataFrame, index: pd.Index) -> UsageStats:
    """UsageStats from (cluster, pattern_id, n, s) cells, patterns positioned by index."""
    pos = index.get_indexer(cells["pattern_id"].astype(str))
    cells = cells.assign(pos=pos).sort_values(["cluster", "pos"], kind="stable")
    n = cells["n"].to_numpy(dtype=np.float64)
    s = cells["s"].to_numpy(dtype=np.float64)
    p = cells["pos"].to_numpy(dtype=np.int64)
    n_p = np.bincount(p, weights=n, minlength=len(index))
    s_p = np.bincount(p, weights=s, minlength=len(index))
    total = float(n_p.sum())
    return UsageStats(
        n_events=n_p,
        sum_quality=s_p,
        cell_cluster=cells["cluster"].to_numpy(dtype=np.int64),
        cell_pattern=p,
        cell_n=n,
        cell_sum=s,
        global_mean=float(s_p.sum() / total) if total > 0 else 0.5,
        prior_steps=prior_mean_steps(),
    )


def _pooled_usage(reader: Reader) -> tuple[np.ndarray, UsageStats]:
    """usage() of every project together."""
    cached = reader.cache.get("usage")
    if cached is not None:
        return cached
    if reader.has("marts.pattern_predictions"):
        cells = reader.df(
            "select context_cluster_id as cluster, pattern_id, n_events::double as n, "
            "n_events * mean_quality as s from marts.pattern_predictions"
        )
    else:
        cells = reader.df(
            "select -1 as cluster, pattern_id, count(*)::double as n, "
            "sum(outcome_quality) as s from staging.stg_usage_events "
            "where outcome_quality is not null group by pattern_id"
        )
    known = reader.df("select pattern_id from marts.dim_patterns")["pattern_id"].astype(str)
    ids = np.array(sorted(set(known) | set(cells["pattern_id"].astype(str))))
    index = pd.Index(ids)
    stats = _stats(cells, index)
    reader.cache["usage"] = (ids, stats)
    reader.cache["usage_index"] = index
    return ids, stats


def predict(
    reader: Reader,
    text: str,
    k: int = 10,
    *,
    rank_by: str = "mean",
    params: RankingParams | None = None,
    project: str | None = None,
) -> Prediction:
    """The k patterns that best fit the task and work, best first (k rows whenever k
    patterns exist).

    Each row says why: score = relevance x predicted_success^exponent; relevance (how
    likely this pattern is the one used for such tasks), vote_share (its share of the
    nearest texts' vote), predicted_success with its credible interval ci_low..ci_high
    and effective_n, the events behind them (n_events in the task's context clusters,
    n_context_events among the nearest texts, usage_count overall), nearest_tasks (the
    past texts that used it, nearest first) and fallback ("" when the nearest texts
    voted for it, "cluster" when only its context cluster did, "global" otherwise).
    rank_by "lower" discounts by a lower bound of success instead (risk-averse).
    `project`: answer for that project, borrowing success from the others (module
    docstring); None: the current project (resolve_project); "*": every project pooled.
    """
    k = check_k(k)
    if rank_by not in ("mean", "lower"):
        raise InvalidQuery(f"rank_by must be 'mean' or 'lower', got {rank_by!r}")
    params = ranking_params(params)
    query = reader.embed(text)
    reader.require("marts.dim_patterns", "staging.stg_contexts")
    project, notes = resolve_project(reader, project)
    ids, stats = usage(reader, project)
    evidence, entries = nearest_contexts(reader, query, params, project)
    entry_pos = reader.cache["usage_index"].get_indexer(entries["pattern_id"].astype(str))
    known = entry_pos >= 0
    vote_p, vote_w = neighbour_votes(
        evidence["similarity"].to_numpy(dtype=float),
        entries["neighbour"].to_numpy()[known],
        entry_pos[known],
        entries["n_events"].to_numpy(dtype=float)[known],
        params.bandwidth,
    )
    has = evidence["context_cluster_id"].notna().to_numpy()
    cids, cws = cluster_mix(
        evidence["context_cluster_id"].to_numpy()[has].astype(np.int64),
        evidence["weight"].to_numpy(dtype=float)[has],
        params.n_clusters,
    )
    clusters = cluster_frame(reader, cids, cws)
    if evidence.empty:
        notes.append("no past task texts: ranked by usage and success alone (fallback rows)")
    elif not len(cids):
        notes.append(
            "no context clusters (run `engram build`): success is each pattern's own, "
            "shrunk toward the global mean"
        )
    ranked = rank(stats, vote_p, vote_w, cids, cws, k, params, rank_by=rank_by)
    frame = rows(reader, ids, stats, ranked, evidence, entries, cids)
    frame = with_borrowed(reader, frame, ranked, cids, project)
    if frame.empty:
        notes.append("no patterns in the warehouse")
    frame.insert(0, "rank", np.arange(1, len(frame) + 1))
    return Prediction(text, frame, evidence, clusters, notes, project)


def nearest_contexts(
    reader: Reader, query: np.ndarray, params: RankingParams, project: str | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The params.neighbours past task texts nearest the query (similarity, kernel weight,
    text, context cluster), and the patterns used with each (one row per text x pattern:
    neighbour position, pattern_id, n_events, sum_quality); only `project`'s uses when
    given (a text no event of the project used then votes for nothing)."""
    hits = reader.index("contexts").search(query, params.neighbours, reader.search_mode)
    frame = pd.DataFrame(
        {"context_hash": hits.ids.astype(str), "similarity": hits.similarities.astype(float)}
    )
    empty_entries = pd.DataFrame(
        {"neighbour": [], "pattern_id": [], "n_events": [], "sum_quality": []}
    )
    if frame.empty:
        return (
            frame.assign(weight=[], context=[], context_cluster_id=[], n_events=[]),
            empty_entries,
        )
    frame["weight"] = kernel(frame["similarity"].to_numpy(), params.bandwidth)
    in_list = ", ".join(sql_string(h) for h in frame["context_hash"])
    cluster_sql = (
        "left join (select * from intermediate.int_contexts__clustered "
        f"where context_hash in ({in_list})) as k using (context_hash)"
        if reader.has("intermediate.int_contexts__clustered")
        else ""
    )
    cluster_col = "k.context_cluster_id" if cluster_sql else "null::bigint"
    details = reader.df(
        f"""
        select c.context_hash, c.context, {cluster_col} as context_cluster_id, c.n_events
        from staging.stg_contexts as c {cluster_sql}
        where c.context_hash in ({in_list})
        """
    )
    frame = frame.merge(details, on="context_hash", how="left")
    if reader.has("serving.context_patterns"):
        outcomes = "serving.context_patterns"
    else:
        outcomes = (
            "(select context_hash, project_id, pattern_id, count(*) as n_events, "
            "sum(outcome_quality) as sum_quality from staging.stg_usage_events "
            "where outcome_quality is not null group by all)"
        )
    mine = "" if pooled(project) else f"and project_id = {sql_string(str(project))}"
    used = reader.df(
        f"select context_hash, pattern_id, sum(n_events)::double as n_events, "
        f"sum(sum_quality) as sum_quality from {outcomes} "
        f"where context_hash in ({in_list}) {mine} group by context_hash, pattern_id"
    )
    position = pd.Series(np.arange(len(frame)), index=frame["context_hash"])
    entries = used.assign(neighbour=position.reindex(used["context_hash"]).to_numpy())
    return frame, entries[["neighbour", "pattern_id", "n_events", "sum_quality"]]


def with_borrowed(
    reader: Reader,
    frame: pd.DataFrame,
    ranked: Ranked,
    cids: np.ndarray,
    project: str | None,
) -> pd.DataFrame:
    """Add borrowed_events (other projects' events the success leaned on, weighted over
    the task's clusters) and `borrowed` ("borrowed: 34 uses in 2 other projects", "" for
    none) to a project's rows."""
    if pooled(project) or ranked.borrowed is None or frame.empty:
        return frame
    frame = frame.assign(borrowed_events=ranked.borrowed)
    counts: dict[str, int] = {}
    if reader.has("marts.pattern_project_predictions"):
        in_list = ", ".join(sql_string(str(p)) for p in frame["pattern_id"])
        in_clusters = (
            f"and context_cluster_id in ({', '.join(str(int(c)) for c in cids)})"
            if len(cids)
            else ""
        )
        found = reader.rows(
            "select pattern_id, count(distinct project_id) "
            "from marts.pattern_project_predictions "
            f"where project_id <> ? and pattern_id in ({in_list}) {in_clusters} "
            "group by pattern_id",
            [project],
        )
        counts = {str(p): int(n) for p, n in found}

    def say(pattern_id: str, events: float) -> str:
        uses = round(events)
        if uses < 1:
            return ""
        k = counts.get(pattern_id, 0)
        where = f" in {k} other project{'s' if k != 1 else ''}" if k else " in other projects"
        return f"borrowed: {uses} use{'s' if uses != 1 else ''}{where}"

    frame["borrowed"] = [
        say(str(p), float(e))
        for p, e in zip(frame["pattern_id"], frame["borrowed_events"], strict=True)
    ]
    return frame


def cluster_frame(reader: Reader, cids: np.ndarray, cws: np.ndarray) -> pd.DataFrame:
    """The task's context clusters with their labels and share of the mix."""
    labels: dict[int, str] = {}
    if len(cids) and reader.has("marts.context_clusters"):
        ids, _, names = cluster_centroids(reader)
        labels = {int(c): n for c, n in zip(ids, names, strict=True)}
    return pd.DataFrame(
        {
            "context_cluster_id": cids.astype(np.int64),
            "label": [labels.get(int(c)) for c in cids],
            "weight": cws,
        }
    )


def rows(
    reader: Reader,
    ids: np.ndarray,
    stats: UsageStats,
    ranked: Ranked,
    evidence: pd.DataFrame,
    entries: pd.DataFrame,
    cids: np.ndarray,
) -> pd.DataFrame:
    """One row per ranked pattern: the numbers behind its place and what it drew on."""
    pattern_ids = [str(p) for p in ids[ranked.pattern]]
    s = prior_strength()
    m_p = (stats.sum_quality + s * stats.prior_mean) / (stats.n_events + s)
    raw_cell = np.zeros(len(ranked.pattern))
    where = {int(p): i for i, p in enumerate(ranked.pattern)}
    for c in cids:
        sl = stats.cells(int(c))
        for p, n in zip(stats.cell_pattern[sl], stats.cell_n[sl], strict=True):
            if (i := where.get(int(p))) is not None:
                raw_cell[i] += n
    near = entries.merge(
        evidence[["similarity", "context"]].reset_index(names="neighbour"), on="neighbour"
    ).sort_values("similarity", ascending=False, kind="stable")
    by_pattern = near.groupby("pattern_id", sort=False)
    n_context = by_pattern["n_events"].sum()
    q_context = by_pattern["sum_quality"].sum()
    tasks = by_pattern["context"].agg(lambda c: list(c)[:NEAREST_TASKS_SHOWN])
    low, high = beta_interval(ranked.alpha, ranked.beta, credible_mass())
    frame = pd.DataFrame(
        {
            # object even when empty (an empty warehouse): the merge below keys on it
            "pattern_id": pd.Series(list(pattern_ids), dtype=object),
            "score": ranked.score,
            "relevance": ranked.relevance,
            "vote_share": ranked.vote,
            "predicted_success": ranked.success,
            "ci_low": low,
            "ci_high": high,
            "n_events": raw_cell.astype(np.int64),
            "n_context_events": [int(n_context.get(p, 0)) for p in pattern_ids],
            "effective_n": ranked.alpha + ranked.beta,
            "prior_success": m_p[ranked.pattern],
            "context_success": [
                float(q_context[p] / n_context[p]) if n_context.get(p, 0) > 0 else np.nan
                for p in pattern_ids
            ],
            "fallback": list(ranked.fallback),
            "nearest_tasks": [tasks.get(p, []) for p in pattern_ids],
        }
    )
    in_list = ", ".join(sql_string(p) for p in pattern_ids) or "null"
    details = reader.df(
        f"""
        select pattern_id, description, success_rate, usage_count, cluster_id,
               cluster_label, pattern_type
        from marts.dim_patterns where pattern_id in ({in_list})
        """
    )
    frame = frame.merge(details, on="pattern_id", how="left")
    front = ["pattern_id", "description", "score", "relevance", "predicted_success"]
    return frame[front + [c for c in frame.columns if c not in front]]
