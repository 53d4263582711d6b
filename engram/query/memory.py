"""Ask engram: the Python API behind `engram similar/predict/trends/files/clusters/sql`.

    from engram.memory import Memory
    with Memory("warehouse/engram.duckdb") as memory:
        memory.find_similar("test fails only at midnight", k=5)     # DataFrame
        memory.predict("tokio task is not Send", k=5).patterns      # DataFrame
        memory.trends("p0000042", weeks=12)                         # DataFrame

Memory opens the published serving copy read-only (engram.serving), never the warehouse
while one exists, so it keeps answering while ingest or dbt write. Vector search goes
through engram.index (IVF when it is current, exact otherwise).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import duckdb
import numpy as np
import pandas as pd

from engram.config import resolve_db_path
from engram.index import SearchMode, VectorIndex, normalize, open_index
from engram.serving import (
    QueryError,
    ServingCopy,
    ServingError,
    _vectors,
    connect_reader,
    context_vectors_sql,
    pattern_vectors_sql,
)
from engram.udf import QueryEmbedder, register_embed
from ingest.embedder import Embedder

# predict(): how evidence is combined (README "How predict combines evidence").
N_CONTEXTS = 20  # nearest past task texts looked at
CONTEXT_MARGIN = 0.1  # keep contexts within this cosine of the best match
N_CLUSTERS = 3  # context clusters whose pattern_predictions form the prior
PRIOR_STRENGTH = 5.0  # pseudo-events added to a prior's own events
EVIDENCE_WEIGHT = 0.5  # nearest-context events also feed the cluster prior: count them half
CREDIBLE_MASS = 0.9  # central interval reported as ci_low..ci_high
MAX_K = 1000


class InvalidQuery(ValueError):
    """The question itself is wrong (empty text, k <= 0, unknown id): a usage error, exit 2."""


class MissingMart(QueryError):
    def __init__(self, relation: str) -> None:
        super().__init__(f"{relation} is not built yet: run `engram build`")


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
            "predictions": _records(self.patterns),
            "evidence": _records(self.evidence),
            "clusters": _records(self.clusters),
            "notes": self.notes,
        }


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for row in frame.to_dict(orient="records"):
        out.append({key: _plain(value) for key, value in row.items()})
    return out


def _plain(value: Any) -> Any:
    """JSON-friendly scalars: numpy to Python, NaN to None, dates to ISO strings."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, np.ndarray | list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if value is pd.NaT or value is pd.NA:
        return None
    return value


def check_text(text: str | None, what: str = "text") -> str:
    if text is None or not str(text).strip():
        raise InvalidQuery(f"{what} is empty: give the words to search for")
    return str(text).strip()


def check_k(k: int, name: str = "k") -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k <= 0:
        raise InvalidQuery(f"{name} must be a positive integer, got {k!r}")
    if k > MAX_K:
        raise InvalidQuery(f"{name} must be at most {MAX_K}, got {k}")
    return int(k)


class Memory:
    """Read-only questions to one warehouse's serving copy (or the warehouse, if none)."""

    def __init__(
        self,
        db: str | Path | None = None,
        *,
        embedder: Embedder | QueryEmbedder | None = None,
        search_mode: SearchMode = "auto",
    ) -> None:
        self.db_path = resolve_db_path(db)
        try:
            self.con, self.copy = connect_reader(self.db_path)
        except ServingError as exc:
            raise QueryError(str(exc)) from exc
        self.search_mode: SearchMode = search_mode
        self.query_embedder = register_embed(self.con, embedder)
        self.relations = {
            r[0]
            for r in self.con.execute(
                "select table_schema || '.' || table_name from information_schema.tables "
                "where table_catalog = current_database()"
            ).fetchall()
        }
        self.meta: dict[str, Any] = {}
        if "serving.meta" in self.relations:
            cursor = self.con.execute("select * from serving.meta")
            names = [d[0] for d in cursor.description]
            row = cursor.fetchone()
            self.meta = dict(zip(names, row, strict=True)) if row else {}
        self._indexes: dict[str, VectorIndex] = {}
        self._centroids: tuple[np.ndarray, np.ndarray, list[str]] | None = None
        self._global_mean: float | None = None

    # ------------------------------------------------------------------ plumbing

    def __enter__(self) -> Memory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (removing the UDF first avoids shutdown noise from duckdb)."""
        con = getattr(self, "con", None)
        if con is not None:
            with contextlib.suppress(duckdb.Error):
                con.remove_function("embed")
            con.close()
            self.con = None  # type: ignore[assignment]

    @property
    def source(self) -> str:
        """What is being read: the serving copy's build, or the warehouse itself."""
        if self.copy:
            return f"serving copy {self.copy.build_id} ({self.copy.database})"
        return f"warehouse {self.db_path} (read-only; no serving copy published)"

    def has(self, relation: str) -> bool:
        return relation in self.relations

    def require(self, *relations: str) -> None:
        for relation in relations:
            if relation not in self.relations:
                raise MissingMart(relation)

    def df(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
        return self.con.execute(sql, params or []).df()

    def embed(self, text: str) -> np.ndarray:
        return self.query_embedder.encode(check_text(text))

    def index(self, name: Literal["patterns", "contexts"]) -> VectorIndex:
        """The vector index for patterns or contexts, opened once per Memory."""
        if name not in self._indexes:
            sql = pattern_vectors_sql() if name == "patterns" else context_vectors_sql()
            self.require("marts.dim_patterns" if name == "patterns" else "staging.stg_contexts")

            def from_database() -> tuple[np.ndarray, np.ndarray]:
                return _vectors(self.con, sql)

            if self.copy is None:
                ids, vectors = from_database()
                self._indexes[name] = VectorIndex(name, ids, normalize(vectors), None)
            else:
                self._indexes[name] = open_index(
                    self.copy.directory,
                    name,
                    expected_fingerprint=self.meta.get(f"{name}_fingerprint"),
                    fallback=from_database,
                )
        return self._indexes[name]

    # ------------------------------------------------------------------ similar

    def find_similar(self, text: str, k: int = 10) -> pd.DataFrame:
        """Patterns closest in meaning to text, best first."""
        k = check_k(k)
        query = self.embed(text)
        self.require("marts.dim_patterns")
        hits = self.index("patterns").search(query, k, self.search_mode)
        return self._pattern_rows(hits.ids, {"similarity": hits.similarities})

    def similar_to_pattern(self, pattern_id: str, k: int = 10) -> pd.DataFrame:
        """Patterns closest in meaning to an existing pattern (itself excluded)."""
        k = check_k(k)
        self.require("marts.dim_patterns")
        row = self.con.execute(
            "select embedding from marts.dim_patterns where pattern_id = ?", [pattern_id]
        ).fetchone()
        if row is None:
            raise InvalidQuery(f"unknown pattern id {pattern_id!r}")
        if row[0] is None:
            raise QueryError(f"pattern {pattern_id!r} has no embedding yet: run `engram build`")
        hits = self.index("patterns").search(np.asarray(row[0]), k + 1, self.search_mode)
        keep = hits.ids != pattern_id
        return self._pattern_rows(hits.ids[keep][:k], {"similarity": hits.similarities[keep][:k]})

    def _pattern_rows(self, ids: np.ndarray, extra: dict[str, np.ndarray]) -> pd.DataFrame:
        ordered = pd.DataFrame({"pattern_id": [str(i) for i in ids], **extra})
        if ordered.empty:
            return ordered.assign(description=[], success_rate=[], usage_count=[])
        details = self.df(
            """
            select pattern_id, description, success_rate, usage_count, cluster_id,
                   cluster_label, pattern_type, metadata
            from marts.dim_patterns where pattern_id in (select unnest(?::varchar[]))
            """,
            [ordered["pattern_id"].tolist()],
        )
        merged = ordered.merge(details, on="pattern_id", how="left")
        front = ["pattern_id", "description", *extra.keys(), "success_rate", "usage_count"]
        return merged[front + [c for c in merged.columns if c not in front]]

    # ------------------------------------------------------------------ predict

    def global_mean(self) -> float:
        """Event-weighted mean outcome quality over all patterns: the prior of last resort."""
        if self._global_mean is None:
            value = None
            if self.has("marts.dim_patterns"):
                value = self.con.execute(
                    "select sum(success_rate * usage_count) / nullif(sum(usage_count), 0) "
                    "from marts.dim_patterns where success_rate is not null"
                ).fetchone()[0]  # type: ignore[index]
            self._global_mean = float(value) if value is not None else 0.5
        return self._global_mean

    def _cluster_centroids(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        if self._centroids is None:
            frame = self.df(
                "select context_cluster_id, label, centroid from marts.context_clusters "
                "where centroid is not null order by context_cluster_id"
            )
            matrix = (
                normalize(np.stack(frame["centroid"].to_numpy()))
                if len(frame)
                else np.zeros((0, 384), np.float32)
            )
            self._centroids = (
                frame["context_cluster_id"].to_numpy(),
                matrix,
                frame["label"].astype(str).tolist(),
            )
        return self._centroids

    def predict(self, text: str, k: int = 10, *, rank_by: str = "mean") -> Prediction:
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
        query = self.embed(text)
        self.require("marts.dim_patterns", "staging.stg_contexts")
        notes: list[str] = []

        evidence = self._nearest_contexts(query)
        clusters = self._prior_clusters(query, evidence, notes)
        ranked = self._combine(evidence, clusters, k, rank_by)
        if ranked.empty:
            notes.append("no past contexts or cluster predictions near this task")
        ranked.insert(0, "rank", np.arange(1, len(ranked) + 1))
        return Prediction(text, ranked, evidence.drop(columns=["row"]), clusters, notes)

    def _nearest_contexts(self, query: np.ndarray) -> pd.DataFrame:
        hits = self.index("contexts").search(query, N_CONTEXTS, self.search_mode)
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
        in_list = ", ".join(_sql_string(h) for h in frame["context_hash"])
        cluster_sql = (
            "left join (select * from intermediate.int_contexts__clustered "
            f"where context_hash in ({in_list})) as k using (context_hash)"
            if self.has("intermediate.int_contexts__clustered")
            else ""
        )
        cluster_col = "k.context_cluster_id" if cluster_sql else "null::bigint"
        details = self.df(
            f"""
            select c.context_hash, c.context, {cluster_col} as context_cluster_id, c.n_events
            from staging.stg_contexts as c {cluster_sql}
            where c.context_hash in ({in_list})
            """
        )
        return frame.merge(details, on="context_hash", how="left")

    def _prior_clusters(
        self, query: np.ndarray, evidence: pd.DataFrame, notes: list[str]
    ) -> pd.DataFrame:
        """Clusters whose pattern_predictions form the prior, with weights summing to 1."""
        empty = pd.DataFrame({"context_cluster_id": [], "label": [], "weight": []})
        if not (self.has("marts.pattern_predictions") and self.has("marts.context_clusters")):
            notes.append(
                "marts.pattern_predictions / marts.context_clusters missing: prior is each "
                "pattern's overall shrunken success (run `engram build`)"
            )
            return empty
        ids, centroids, labels = self._cluster_centroids()
        if len(ids) == 0:
            return empty
        sims = centroids @ normalize(query)
        votes = (
            evidence.dropna(subset=["context_cluster_id"])
            .groupby("context_cluster_id")["weight"]
            .sum()
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

    def _combine(
        self, evidence: pd.DataFrame, clusters: pd.DataFrame, k: int, rank_by: str
    ) -> pd.DataFrame:
        """Beta posterior per candidate pattern (cluster prior + nearest-context outcomes),
        ranked in one SQL query; the credible interval is computed for the shortlist only.

        Prior mean per pattern: each chosen cluster's pattern_predictions.predicted_success,
        shrunk once more toward the global mean g by PRIOR_STRENGTH pseudo-events (so the
        in-cluster sample size counts), mixed by cluster weight; a pattern with no row in a
        cluster contributes g there. Without cluster marts: the pattern's overall success
        rate shrunk toward g. Evidence: weight * outcome sums of the nearest contexts.
        """
        g = self.global_mean()
        cluster_ids = [int(c) for c in clusters["context_cluster_id"]] if len(clusters) else []
        use_clusters = bool(cluster_ids)
        if self.has("serving.context_patterns"):
            outcomes = "serving.context_patterns"
        elif self.has("staging.stg_usage_events"):
            outcomes = (
                "(select context_hash, pattern_id, count(*) as n_events, "
                "sum(outcome_quality) as sum_quality from staging.stg_usage_events "
                "where outcome_quality is not null group by all)"
            )
        else:
            outcomes = None
        hashes = evidence["context_hash"].tolist() if outcomes else []
        cluster_filter = ", ".join(str(c) for c in cluster_ids) or "null"
        hash_filter = ", ".join(_sql_string(h) for h in hashes) or "null"
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
            "s": PRIOR_STRENGTH,
            "lam": EVIDENCE_WEIGHT,
            "limit": max(5 * k, 200) if rank_by == "lower" else k,
        }
        used = {name for name in params if f"${name}" in sql}
        ranked = self.con.execute(sql, {n: v for n, v in params.items() if n in used}).df()
        # descriptions for the shortlist only, by a point lookup (the ART index on pattern_id
        # in the serving copy), not a join that scans all of dim_patterns
        in_list = ", ".join(_sql_string(p) for p in ranked["pattern_id"]) or "null"
        details = self.df(
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
        return _with_interval(frame, k, rank_by)

    # ------------------------------------------------------------------ trends, files, clusters

    def _known_pattern(self, pattern_id: str) -> None:
        source = "marts.dim_patterns" if self.has("marts.dim_patterns") else None
        if source is None:
            raise MissingMart("marts.dim_patterns")
        found = self.con.execute(
            f"select 1 from {source} where pattern_id = ?", [pattern_id]
        ).fetchone()
        if not found:
            raise InvalidQuery(f"unknown pattern id {pattern_id!r}")

    def trends(self, pattern_id: str | None = None, weeks: int = 12) -> pd.DataFrame:
        """With an id: its last `weeks` weekly rows. Without: most improving and declining."""
        weeks = check_k(weeks, "weeks")
        if pattern_id is None:
            return self.trend_summary(top=weeks)
        self.require("marts.pattern_trends")
        self._known_pattern(pattern_id)
        return self.df(
            """
            select * from (
                select pattern_id, week, usage_count, avg_quality, moving_avg_quality
                from marts.pattern_trends where pattern_id = ?
                order by week desc limit ?
            ) order by week
            """,
            [pattern_id, weeks],
        )

    def trend_summary(
        self, pattern_id: str | None = None, top: int = 10, direction: str | None = None
    ) -> pd.DataFrame:
        """pattern_trend_summary rows: one pattern's, or the steepest improving/declining."""
        self.require("marts.pattern_trend_summary")
        columns = """
            s.pattern_id, s.direction, s.quality_slope_per_week, s.slope_t_stat, s.n_events,
            s.avg_quality, s.first_week, s.last_week
        """
        join = ""
        if self.has("marts.dim_patterns"):
            columns += ", p.description"
            join = "left join marts.dim_patterns as p using (pattern_id)"
        if pattern_id is not None:
            self._known_pattern(pattern_id)
            return self.df(
                f"select {columns} from marts.pattern_trend_summary as s {join} "
                "where s.pattern_id = ?",
                [pattern_id],
            )
        wanted = [direction] if direction else ["improving", "declining"]
        return self.df(
            f"""
            select {columns} from marts.pattern_trend_summary as s {join}
            where s.direction in (select unnest(?::varchar[]))
            order by abs(s.quality_slope_per_week) desc, s.pattern_id
            limit ?
            """,
            [wanted, check_k(top, "top")],
        )

    def files(self, file: str | None = None, top: int = 20) -> pd.DataFrame:
        """Files that travel with `file` (or the strongest pairs overall) and how they fare."""
        top = check_k(top, "top")
        self.require("marts.file_cooccurrence")
        columns = """co_occurrences, avg_quality, quality_lift, success_correlation,
                     quality_slope_per_week, direction, first_seen_at, last_seen_at"""
        if file is None:
            return self.df(
                f"""select file_a, file_b, {columns} from marts.file_cooccurrence
                order by co_occurrences desc, file_a, file_b limit ?""",
                [top],
            )
        file = check_text(file, "file")
        frame = self.df(
            f"""
            select case when file_a = $1 then file_b else file_a end as travels_with, {columns}
            from marts.file_cooccurrence where file_a = $1 or file_b = $1
            order by co_occurrences desc, travels_with limit $2
            """,
            [file, top],
        )
        if frame.empty and not self._file_known(file):
            raise InvalidQuery(f"unknown file {file!r}: no usage event involves it")
        return frame

    def _file_known(self, file: str) -> bool:
        if self.has("marts.file_graph_nodes"):
            sql = "select 1 from marts.file_graph_nodes where file_path = ?"
        else:
            return False
        return self.con.execute(sql, [file]).fetchone() is not None

    def file_graph(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(nodes, edges) of the file co-occurrence graph."""
        self.require("marts.file_graph_nodes", "marts.file_graph_edges")
        nodes = self.df("select * from marts.file_graph_nodes order by n_events desc, file_path")
        edges = self.df("select * from marts.file_graph_edges order by weight desc, file_a, file_b")
        return nodes, edges

    def clusters(self, top: int = 20) -> pd.DataFrame:
        """Largest clusters of patterns by meaning, with labels and mean success."""
        top = check_k(top, "top")
        self.require("marts.pattern_clusters")
        success = ""
        join = ""
        if self.has("marts.dim_patterns"):
            success = (
                ", sum(p.success_rate * p.usage_count) / nullif(sum(p.usage_count), 0) "
                "as success_rate, sum(p.usage_count) as usage_count"
            )
            join = "left join marts.dim_patterns as p using (pattern_id)"
        return self.df(
            f"""
            select c.cluster_id, any_value(c.cluster_label) as cluster_label,
                   count(*) as n_patterns {success}
            from marts.pattern_clusters as c {join}
            group by c.cluster_id order by n_patterns desc, c.cluster_id limit ?
            """,
            [top],
        )

    def cluster_members(self, cluster_id: int, top: int = 20) -> pd.DataFrame:
        top = check_k(top, "top")
        self.require("marts.pattern_clusters", "marts.dim_patterns")
        frame = self.df(
            """
            select c.pattern_id, p.description, c.similarity_to_centroid, p.success_rate,
                   p.usage_count, c.cluster_label
            from marts.pattern_clusters as c join marts.dim_patterns as p using (pattern_id)
            where c.cluster_id = ?
            order by c.similarity_to_centroid desc, c.pattern_id limit ?
            """,
            [cluster_id, top],
        )
        if frame.empty:
            raise InvalidQuery(f"unknown cluster id {cluster_id!r}")
        return frame

    # ------------------------------------------------------------------ sql

    def sql(self, query: str) -> pd.DataFrame:
        """Any read-only SQL against the serving copy; embed('text') is available."""
        query = check_text(query, "query")
        try:
            return self.con.execute(query).df()
        except duckdb.Error as exc:
            message = " ".join(str(exc).split())
            raise QueryError(f"query failed: {message}") from exc


def _beta_quantile(frame: pd.DataFrame, q: float) -> np.ndarray:
    from scipy.stats import beta

    a = frame["alpha"].to_numpy(dtype=float)
    b = frame["beta"].to_numpy(dtype=float)
    return np.asarray(beta.ppf(q, np.maximum(a, 1e-9), np.maximum(b, 1e-9)), dtype=float)


def _sql_string(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _with_interval(frame: pd.DataFrame, k: int, rank_by: str) -> pd.DataFrame:
    """Add the central CREDIBLE_MASS Beta interval; for rank_by "lower" re-rank by ci_low."""
    frame = frame.assign(
        ci_low=_beta_quantile(frame, (1 - CREDIBLE_MASS) / 2),
        ci_high=_beta_quantile(frame, 1 - (1 - CREDIBLE_MASS) / 2),
    )
    if rank_by == "lower":
        frame = frame.sort_values(
            ["ci_low", "predicted_success", "pattern_id"], ascending=[False, False, True]
        )
    frame = frame.head(k).drop(columns=["alpha", "beta"]).reset_index(drop=True)
    front = ["pattern_id", "description", "predicted_success", "ci_low", "ci_high"]
    return frame[front + [c for c in frame.columns if c not in front]]


__all__ = [
    "InvalidQuery",
    "Memory",
    "MissingMart",
    "Prediction",
    "QueryError",
    "ServingCopy",
]
