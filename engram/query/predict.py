"""What patterns predict success for this kind of task?

predict() combines a prior from the context clusters nearest the task
(marts.pattern_predictions) with the similarity-weighted outcomes of the patterns used in
the nearest past task texts into a Beta posterior per candidate pattern (README "How
predict combines evidence").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from engram.numeric.posterior import beta_interval
from engram.project import dbt_vars
from engram.query.errors import InvalidQuery, check_k
from engram.query.index import normalize
from engram.query.jsonable import records
from engram.query.reader import Reader
from ingest.warehouse import sql_string

# How evidence is combined (README "How predict combines evidence").
N_CONTEXTS = 20  # nearest past task texts looked at
CONTEXT_MARGIN = 0.1  # keep contexts within this cosine of the best match
N_CLUSTERS = 3  # context clusters whose pattern_predictions form the prior
EVIDENCE_WEIGHT = 0.5  # nearest-context events also feed the cluster prior: count them half


def prior_strength() -> float:
    """Pseudo-events added to a prior's own events: dbt var prediction_prior_strength."""
    return float(dbt_vars()["prediction_prior_strength"])


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "predictions": records(self.patterns),
            "evidence": records(self.evidence),
            "clusters": records(self.clusters),
            "notes": self.notes,
        }


def global_mean(reader: Reader) -> float:
    """Event-weighted mean outcome quality over all patterns: the prior of last resort."""
    if reader.cache.get("global_mean") is None:
        value = None
        if reader.has("marts.dim_patterns"):
            value = reader.con.execute(
                "select sum(success_rate * usage_count) / nullif(sum(usage_count), 0) "
                "from marts.dim_patterns where success_rate is not null"
            ).fetchone()[0]  # type: ignore[index]
        reader.cache["global_mean"] = float(value) if value is not None else 0.5
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


def predict(reader: Reader, text: str, k: int = 10, *, rank_by: str = "mean") -> Prediction:
    """Patterns ranked by predicted success for this task text.

    Prior per pattern: pattern_predictions (shrunken per-cluster success) of the task's
    nearest context clusters, weighted by how much of the task's neighbourhood falls in
    each; evidence: similarity-weighted outcomes of the patterns used in the nearest
    past contexts. Beta posterior: mean, 90% interval and effective sample size.
    rank_by "mean" (expected success, default) or "lower" (ci_low: risk-averse).
    """
    k = check_k(k)
    if rank_by not in ("mean", "lower"):
        raise InvalidQuery(f"rank_by must be 'mean' or 'lower', got {rank_by!r}")
    query = reader.embed(text)
    reader.require("marts.dim_patterns", "staging.stg_contexts")
    notes: list[str] = []

    evidence = nearest_contexts(reader, query)
    clusters = prior_clusters(reader, query, evidence, notes)
    ranked = combine(reader, evidence, clusters, k, rank_by)
    if ranked.empty:
        notes.append("no past contexts or cluster predictions near this task")
    ranked.insert(0, "rank", np.arange(1, len(ranked) + 1))
    return Prediction(text, ranked, evidence.drop(columns=["row"]), clusters, notes)


def nearest_contexts(reader: Reader, query: np.ndarray) -> pd.DataFrame:
    hits = reader.index("contexts").search(query, N_CONTEXTS, reader.search_mode)
    frame = pd.DataFrame(
        {
            "row": hits.rows,
            "context_hash": hits.ids.astype(str),
            "similarity": hits.similarities,
        }
    )
    if frame.empty:
        return frame.assign(weight=[], context=[], context_cluster_id=[], n_events=[])
    best = float(frame["similarity"].max())
    frame = frame[frame["similarity"] >= best - CONTEXT_MARGIN].copy()
    frame["weight"] = frame["similarity"].clip(lower=0.0)
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
    return frame.merge(details, on="context_hash", how="left")


def prior_clusters(
    reader: Reader, query: np.ndarray, evidence: pd.DataFrame, notes: list[str]
) -> pd.DataFrame:
    """Clusters whose pattern_predictions form the prior, with weights summing to 1."""
    empty = pd.DataFrame({"context_cluster_id": [], "label": [], "weight": []})
    if not (reader.has("marts.pattern_predictions") and reader.has("marts.context_clusters")):
        notes.append(
            "marts.pattern_predictions / marts.context_clusters missing: prior is each "
            "pattern's overall shrunken success (run `engram build`)"
        )
        return empty
    ids, centroids, labels = cluster_centroids(reader)
    if len(ids) == 0:
        return empty
    sims = centroids @ normalize(query)
    votes = (
        evidence.dropna(subset=["context_cluster_id"]).groupby("context_cluster_id")["weight"].sum()
    )
    if votes.empty:  # nothing near in the past: trust the nearest centroids
        top = np.argsort(-sims)[:N_CLUSTERS]
        votes = pd.Series(np.clip(sims[top], 1e-6, None), index=ids[top])
    votes = votes.sort_values(ascending=False).head(N_CLUSTERS)
    position = {cid: i for i, cid in enumerate(ids)}
    frame = pd.DataFrame(
        {
            "context_cluster_id": votes.index.to_numpy(),
            "label": [labels[position[c]] if c in position else None for c in votes.index],
            "centroid_similarity": [
                float(sims[position[c]]) if c in position else None for c in votes.index
            ],
            "weight": (votes / votes.sum()).to_numpy(),
        }
    )
    return frame


def combine(
    reader: Reader, evidence: pd.DataFrame, clusters: pd.DataFrame, k: int, rank_by: str
) -> pd.DataFrame:
    """Beta posterior per candidate pattern (cluster prior + nearest-context outcomes),
    ranked in one SQL query; the credible interval is computed for the shortlist only.

    Prior mean per pattern: each chosen cluster's pattern_predictions.predicted_success,
    shrunk once more toward the global mean g by PRIOR_STRENGTH pseudo-events (so the
    in-cluster sample size counts), mixed by cluster weight; a pattern with no row in a
    cluster contributes g there. Without cluster marts: the pattern's overall success
    rate shrunk toward g. Evidence: weight * outcome sums of the nearest contexts.
    """
    g = global_mean(reader)
    cluster_ids = [int(c) for c in clusters["context_cluster_id"]] if len(clusters) else []
    use_clusters = bool(cluster_ids)
    if reader.has("serving.context_patterns"):
        outcomes = "serving.context_patterns"
    elif reader.has("staging.stg_usage_events"):
        outcomes = (
            "(select context_hash, pattern_id, count(*) as n_events, "
            "sum(outcome_quality) as sum_quality from staging.stg_usage_events "
            "where outcome_quality is not null group by all)"
        )
    else:
        outcomes = None
    hashes = evidence["context_hash"].tolist() if outcomes else []
    cluster_filter = ", ".join(str(c) for c in cluster_ids) or "null"
    hash_filter = ", ".join(sql_string(h) for h in hashes) or "null"
    prior_cte = (
        f"""
        prior as (
            select p.pattern_id,
                   sum(cw.w * (p.n_events * p.predicted_success + $s * $g)
                       / (p.n_events + $s)) as wm,
                   sum(cw.w) as w, sum(cw.w * p.n_events) as n_w,
                   sum(p.n_events)::bigint as raw_n
            from marts.pattern_predictions as p
            join cw using (context_cluster_id)
            where p.context_cluster_id in ({cluster_filter})
            group by p.pattern_id
        ),"""
        if use_clusters
        else """
        prior as (
            select null::varchar as pattern_id, 0.0 as wm, 0.0 as w, 0.0 as n_w,
                   0::bigint as raw_n
            where false
        ),"""
    )
    evidence_cte = (
        f"""
        ev as (
            select o.pattern_id, sum(xw.w * o.sum_quality) as ws,
                   sum(xw.w * (o.n_events - o.sum_quality)) as wf,
                   sum(o.n_events)::bigint as cn
            from {outcomes} as o join xw using (context_hash)
            where o.context_hash in ({hash_filter})
            group by o.pattern_id
        ),"""
        if outcomes
        else """
        ev as (
            select null::varchar as pattern_id, 0.0 as ws, 0.0 as wf, 0::bigint as cn
            where false
        ),"""
    )
    prior_join = ""
    if use_clusters:
        prior_mean = "coalesce(cand.wm, 0) + (1 - coalesce(cand.w, 0)) * $g"
    else:
        prior_join = "left join marts.dim_patterns as d using (pattern_id)"
        prior_mean = (
            "(coalesce(d.usage_count, 0) * coalesce(d.success_rate, $g) + $s * $g)"
            " / (coalesce(d.usage_count, 0) + $s)"
        )
    order = (
        "predicted_success - 1.645 * sqrt(predicted_success * (1 - predicted_success)"
        " / (effective_n + 1)) desc, "
        if rank_by == "lower"
        else ""
    )
    sql = f"""
        with
        cw as (
            select unnest($cids::bigint[]) as context_cluster_id,
                   unnest($cws::double[]) as w
        ),
        xw as (
            select unnest($hashes::varchar[]) as context_hash,
                   unnest($xws::double[]) as w
        ),
        {prior_cte}
        {evidence_cte}
        cand as (
            select coalesce(prior.pattern_id, ev.pattern_id) as pattern_id,
                   coalesce(prior.n_w, 0) as n_w, coalesce(prior.raw_n, 0) as n_events,
                   prior.wm, prior.w, coalesce(ev.ws, 0) as ws, coalesce(ev.wf, 0) as wf,
                   coalesce(ev.cn, 0) as n_context_events
            from prior full outer join ev using (pattern_id)
        ),
        scored as (
            select cand.*, {prior_mean} as prior_success
            from cand {prior_join}
        ),
        posterior as (
            select *,
                   prior_success * (n_w + $s) + $lam * ws as alpha,
                   (1 - prior_success) * (n_w + $s) + $lam * wf as beta
            from scored
        ),
        ranked as (
            select pattern_id, alpha / (alpha + beta) as predicted_success, n_events,
                   n_context_events, alpha + beta as effective_n, prior_success,
                   ws / nullif(ws + wf, 0) as context_success, alpha, beta
            from posterior
            order by {order}predicted_success desc, effective_n desc, pattern_id
            limit $limit
        )
        select pattern_id, predicted_success, n_events, n_context_events, effective_n,
               prior_success, context_success, alpha, beta
        from ranked
        order by {order}predicted_success desc, effective_n desc, pattern_id
    """
    params = {
        "cids": cluster_ids,
        "cws": [float(w) for w in clusters["weight"]] if use_clusters else [],
        "hashes": hashes,
        "xws": [float(w) for w in evidence["weight"]] if hashes else [],
        "g": g,
        "s": prior_strength(),
        "lam": EVIDENCE_WEIGHT,
        "limit": max(5 * k, 200) if rank_by == "lower" else k,
    }
    used = {name for name in params if f"${name}" in sql}
    ranked = reader.con.execute(sql, {n: v for n, v in params.items() if n in used}).df()
    # descriptions for the shortlist only, by a point lookup (the ART index on pattern_id
    # in the serving copy), not a join that scans all of dim_patterns
    in_list = ", ".join(sql_string(p) for p in ranked["pattern_id"]) or "null"
    details = reader.df(
        f"""
        select pattern_id, description, success_rate, usage_count, cluster_id,
               cluster_label, pattern_type
        from marts.dim_patterns where pattern_id in ({in_list})
        """
    )
    frame = ranked.merge(details, on="pattern_id", how="left")[
        [
            "pattern_id",
            "description",
            "predicted_success",
            "n_events",
            "n_context_events",
            "effective_n",
            "prior_success",
            "context_success",
            "success_rate",
            "usage_count",
            "cluster_id",
            "cluster_label",
            "pattern_type",
            "alpha",
            "beta",
        ]
    ]
    return with_interval(frame, k, rank_by)


# ------------------------------------------------------------------ trends, files, clusters


def with_interval(frame: pd.DataFrame, k: int, rank_by: str) -> pd.DataFrame:
    """Add the central credible interval; for rank_by "lower" re-rank by ci_low."""
    low, high = beta_interval(
        frame["alpha"].to_numpy(dtype=float), frame["beta"].to_numpy(dtype=float), credible_mass()
    )
    frame = frame.assign(ci_low=low, ci_high=high)
    if rank_by == "lower":
        frame = frame.sort_values(
            ["ci_low", "predicted_success", "pattern_id"], ascending=[False, False, True]
        )
    frame = frame.head(k).drop(columns=["alpha", "beta"]).reset_index(drop=True)
    front = ["pattern_id", "description", "predicted_success", "ci_low", "ci_high"]
    return frame[front + [c for c in frame.columns if c not in front]]
