"""Measure query speed at scale: `python -m bench.query_speed --patterns 1000000`.

Targets (issue "Ask engram"): top-10 similar p50 <= 5 ms for the search itself with
recall@10 >= 0.95 against exact search, and predict p50 <= 50 ms including embedding the
query text on CPU. Embedding 1M descriptions would take hours on CPU, so the benchmark
warehouse is synthetic: clustered random unit vectors (centres + noise, like paraphrase
families) for patterns and task texts, events spread over them, and marts with the
interface columns. It then goes through the real path: serving.publish() (copy + IVF
build), Memory() over the serving copy, and measure_query_speed().
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from ingest.embedder import EMBEDDING_DIM

TASKS = (
    "tokio runtime stalls under load in the gateway service",
    "pytest cannot import the billing package but python can",
    "flaky test fails about one run in twenty on CI",
    "docker build does not use the layer cache after a small change",
    "CORS preflight request blocked by the browser",
    "segmentation fault when freeing a linked list node",
    "kubernetes pod in CrashLoopBackOff after deploy",
    "merge conflict in package-lock.json after rebase",
)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clustered_vectors(
    n: int, n_centres: int, noise: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vectors, centre of each, centres): unit vectors around random unit centres."""
    centres = _unit(rng.standard_normal((n_centres, EMBEDDING_DIM)))
    which = rng.integers(0, n_centres, size=n)
    out = np.empty((n, EMBEDDING_DIM), np.float32)
    for lo in range(0, n, 100_000):
        hi = min(n, lo + 100_000)
        jitter = rng.standard_normal((hi - lo, EMBEDDING_DIM)) * (noise / np.sqrt(EMBEDDING_DIM))
        out[lo:hi] = _unit(centres[which[lo:hi]] + jitter)
    return out, which, centres


def _embedding_table(ids: list[str], vectors: np.ndarray, id_name: str) -> pa.Table:
    flat = pa.array(vectors.reshape(-1), type=pa.float32())
    column = pa.FixedSizeListArray.from_arrays(flat, EMBEDDING_DIM)
    return pa.table({id_name: ids, "embedding": column})


def synthesize_warehouse(
    db_path: Path,
    n_patterns: int,
    *,
    n_contexts: int = 100_000,
    n_clusters: int = 1_000,
    n_events: int | None = None,
    noise: float = 0.9,
    seed: int = 0,
) -> None:
    """A warehouse with the tables queries read (marts interface columns), no dbt needed."""
    rng = np.random.default_rng(seed)
    n_events = n_events or 3 * n_patterns
    db_path.unlink(missing_ok=True)
    con = duckdb.connect(str(db_path))
    for schema in ("raw", "staging", "intermediate", "marts"):
        con.execute(f"create schema {schema}")
    patterns, _, _ = clustered_vectors(n_patterns, max(1, n_patterns // 50), noise, rng)
    pattern_ids = [f"p{i:07d}" for i in range(n_patterns)]
    table = _embedding_table(pattern_ids, patterns, "pattern_id")
    con.register("pattern_vectors", table)
    con.execute(
        """
        create table staging.pattern_vectors as select * from pattern_vectors
        """
    )
    del table, patterns
    contexts, cluster_of, centroids = clustered_vectors(n_contexts, n_clusters, noise, rng)
    context_ids = [f"{i:064x}" for i in range(n_contexts)]
    con.register("context_vectors", _embedding_table(context_ids, contexts, "context_hash"))
    con.register("context_cluster", pa.table({"context_hash": context_ids, "cluster": cluster_of}))
    con.execute(
        f"""
        create table staging.stg_usage_events as
        select 'e' || i as event_id,
               'p' || lpad((hash(i) % {n_patterns})::varchar, 7, '0') as pattern_id,
               lpad(printf('%x', (hash(i * 7 + 1) % {n_contexts})), 64, '0') as context_hash,
               (hash(i * 13 + 5) % 1000) / 1000.0 as outcome_quality
        from range({n_events}) as t(i);
        create table staging.stg_contexts as
        select v.context_hash, 'synthetic task ' || v.context_hash as context, v.embedding,
               count(e.event_id) as n_events, null::timestamp as first_used_at,
               null::timestamp as last_used_at
        from context_vectors as v
        left join staging.stg_usage_events as e using (context_hash)
        group by all;
        create table intermediate.int_contexts__clustered as
        select context_hash, cluster::bigint as context_cluster_id,
               0.0::double as similarity_to_centroid
        from context_cluster;
        create table marts.dim_patterns as
        with used as (
            select pattern_id, count(*) as usage_count, avg(outcome_quality) as success_rate
            from staging.stg_usage_events group by pattern_id
        )
        select v.pattern_id, 'synthetic pattern ' || v.pattern_id as description,
               'fix' as pattern_type, null::json as metadata, v.embedding,
               null::timestamp as first_seen_at, null::timestamp as last_used_at,
               coalesce(u.usage_count, 0) as usage_count, u.success_rate,
               0 as cluster_id, 'synthetic' as cluster_label
        from staging.pattern_vectors as v left join used as u using (pattern_id);
        create table marts.pattern_predictions as
        with e as (
            select k.context_cluster_id, e.pattern_id, e.outcome_quality
            from staging.stg_usage_events as e
            join intermediate.int_contexts__clustered as k using (context_hash)
        ),
        agg as (
            select context_cluster_id, pattern_id, count(*) as n_events,
                   avg(outcome_quality) as mean_quality
            from e group by all
        )
        select a.context_cluster_id, 'cluster ' || a.context_cluster_id as context_cluster_label,
               a.pattern_id, a.n_events, a.mean_quality, p.success_rate as pattern_mean_quality,
               (a.n_events * a.mean_quality + 5 * p.success_rate) / (a.n_events + 5)
                   as predicted_success,
               0.0 as ci_low, 1.0 as ci_high
        from agg as a join marts.dim_patterns as p using (pattern_id);
        drop table staging.pattern_vectors;
        """
    )
    con.register(
        "centroids",
        _embedding_table([str(i) for i in range(n_clusters)], centroids, "context_cluster_id"),
    )
    con.execute(
        """
        create table marts.context_clusters as
        select context_cluster_id::bigint as context_cluster_id,
               'cluster ' || context_cluster_id as label, 0 as n_contexts, 0 as n_events,
               embedding as centroid
        from centroids
        """
    )
    con.close()


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": 1000 * statistics.median(ordered),
        "p95_ms": 1000 * ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
    }


def measure_query_speed(
    memory: Any, n_queries: int = 200, seed: int = 1, sweep: tuple[int, ...] = ()
) -> dict[str, Any]:
    """Search p50/p95 (ANN and exact) and recall@10 on held-out queries; predict p50/p95.

    Queries are stored pattern vectors plus fresh noise (not themselves in the index).
    `sweep` also prints recall@10 and latency of the IVF search at other min_candidates.
    predict uses real task texts (made unique, so the embedding cache never hits), so its
    time includes embedding the text with the model on this machine.
    """
    rng = np.random.default_rng(seed)
    index = memory.index("patterns")
    rows = rng.integers(0, len(index), size=n_queries)
    base = np.asarray(index.matrix[np.sort(rows)], dtype=np.float32)
    queries = _unit(base + rng.standard_normal(base.shape) * (0.5 / np.sqrt(EMBEDDING_DIM)))
    ann_t, exact_t, recalls, exact_ids = [], [], [], []
    have_ann = index.ann is not None
    for q in queries:
        started = time.perf_counter()
        exact = index.search(q, 10, "exact")
        exact_t.append(time.perf_counter() - started)
        exact_ids.append(exact.ids.tolist())
        if have_ann:
            started = time.perf_counter()
            approx = index.search(q, 10, "ann")
            ann_t.append(time.perf_counter() - started)
            recalls.append(len(set(approx.ids.tolist()) & set(exact.ids.tolist())) / 10)
    if have_ann and sweep:
        default = index.min_candidates
        print("min_candidates  recall@10  p50 ms  p95 ms")
        for value in sweep:
            index.min_candidates = value
            timings, hits = [], []
            for q in queries:
                started = time.perf_counter()
                approx = index.search(q, 10, "ann")
                timings.append(time.perf_counter() - started)
                hits.append(approx.ids.tolist())
            recall = np.mean(
                [len(set(a) & set(e)) / 10 for a, e in zip(hits, exact_ids, strict=True)]
            )
            p = _percentiles(timings)
            print(f"{value:>14,}  {recall:9.4f}  {p['p50_ms']:6.2f}  {p['p95_ms']:6.2f}")
        index.min_candidates = default
    memory.predict(TASKS[0], 10)  # load the model, scipy, the context index
    predict_t = []
    n_predict = max(20, n_queries // 4)
    for i in range(n_predict):
        started = time.perf_counter()
        memory.predict(f"{TASKS[i % len(TASKS)]} (case {i})", 10)
        predict_t.append(time.perf_counter() - started)
    result: dict[str, Any] = {
        "n_patterns": len(index),
        "n_queries": n_queries,
        "exact_search": _percentiles(exact_t),
        "predict": _percentiles(predict_t),
    }
    if have_ann:
        result["ann_search"] = _percentiles(ann_t)
        result["recall_at_10"] = float(np.mean(recalls))
    print(f"patterns: {result['n_patterns']:,}   queries: {n_queries}")
    if have_ann:
        a = result["ann_search"]
        print(f"similar (IVF) top-10: p50 {a['p50_ms']:.2f} ms  p95 {a['p95_ms']:.2f} ms")
        print(f"recall@10 vs exact:    {result['recall_at_10']:.4f}")
    e = result["exact_search"]
    print(f"similar (exact numpy): p50 {e['p50_ms']:.2f} ms  p95 {e['p95_ms']:.2f} ms")
    p = result["predict"]
    print(
        f"predict (with CPU embedding of the text): p50 {p['p50_ms']:.1f} ms  "
        f"p95 {p['p95_ms']:.1f} ms ({n_predict} calls)"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patterns", type=int, default=1_000_000)
    parser.add_argument("--contexts", type=int, default=100_000)
    parser.add_argument(
        "--events", type=int, default=None, help="events to spread (default 3 per pattern)"
    )
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/engram-bench"))
    parser.add_argument(
        "--sweep",
        type=int,
        nargs="*",
        default=[],
        metavar="N",
        help="also report IVF recall and latency scoring N candidate rows per query",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="reuse the warehouse (and its serving copy) left by an earlier run",
    )
    args = parser.parse_args()
    import os

    os.environ.setdefault("ENGRAM_DEVICE", "cpu")
    from engram.query.memory import Memory
    from engram.query.serving import current, publish, serving_root

    db = args.dir / "bench.duckdb"
    if not (args.reuse and current(db)):
        shutil.rmtree(serving_root(db), ignore_errors=True)
        args.dir.mkdir(parents=True, exist_ok=True)
        if not (args.reuse and db.exists()):
            started = time.perf_counter()
            synthesize_warehouse(db, args.patterns, n_contexts=args.contexts, n_events=args.events)
            print(f"synthetic warehouse: {time.perf_counter() - started:.1f}s", flush=True)
        started = time.perf_counter()
        result = publish(db)
        print(f"publish (serving copy + IVF indexes): {time.perf_counter() - started:.1f}s")
        print(f"  {result.n_patterns:,} patterns, {result.n_contexts:,} contexts")
    with Memory(db) as memory:
        measure_query_speed(memory, args.queries, sweep=tuple(args.sweep))


if __name__ == "__main__":
    main()
