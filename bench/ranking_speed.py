"""`python -m bench.ranking_speed`: in-process ranking latency (engram.numeric.ranking.rank)
at up to 1M patterns, p50/p95 over repeated queries.

What is timed: rank() for one task given its neighbourhood (10 nearest texts with their
patterns, 3 context clusters), over usage statistics already in memory, the work
`predict` does per query after the embedding and the nearest-text search (both measured
by `python -m bench` as "predict incl. embedding"). The statistics are synthetic with the
shapes of a large warehouse: 10 events per pattern on average, Zipf-distributed usage,
each pattern used in ~3 of P/500 context clusters. Building a real 1M-pattern warehouse
takes far longer than the ranking itself and does not change what rank() computes.

Beside it, in the same run: one np.argsort of P floats, the floor any exact ranking over
all patterns pays, so the figure reads as a ratio on another machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np

from engram.numeric.ranking import DEFAULT_PARAMS, UsageStats, cluster_mix, kernel, rank


def synthetic_stats(n_patterns: int, seed: int = 0) -> UsageStats:
    rng = np.random.default_rng(seed)
    n_clusters = max(n_patterns // 500, 4)
    usage = rng.zipf(1.6, n_patterns).clip(max=10_000).astype(np.float64)
    usage *= 10 * n_patterns / usage.sum()
    n = np.round(usage) + 1
    quality = rng.beta(6, 2, n_patterns)
    cells_per = 3
    cell_pattern = np.repeat(np.arange(n_patterns), cells_per)
    cell_cluster = rng.integers(0, n_clusters, len(cell_pattern))
    share = rng.dirichlet(np.ones(cells_per), n_patterns).reshape(-1)
    cell_n = np.maximum(np.round(share * np.repeat(n, cells_per)), 0)
    cell_sum = cell_n * np.repeat(quality, cells_per)
    order = np.lexsort((cell_pattern, cell_cluster))
    cell_n_sorted = cell_n[order]
    n_p = np.bincount(cell_pattern, weights=cell_n, minlength=n_patterns)
    s_p = np.bincount(cell_pattern, weights=cell_sum, minlength=n_patterns)
    return UsageStats(
        n_events=n_p,
        sum_quality=s_p,
        cell_cluster=cell_cluster[order],
        cell_pattern=cell_pattern[order],
        cell_n=cell_n_sorted,
        cell_sum=cell_sum[order],
        global_mean=float(s_p.sum() / max(n_p.sum(), 1)),
    )


def measure(n_patterns: int, repeats: int, k: int) -> dict[str, float]:
    stats = synthetic_stats(n_patterns)
    rng = np.random.default_rng(1)
    n_clusters = int(stats.cell_cluster.max()) + 1
    times, floor = [], []
    for _ in range(repeats):
        sims = np.sort(rng.uniform(0.4, 0.95, DEFAULT_PARAMS.neighbours))[::-1]
        per = rng.integers(1, 4, len(sims))
        entry_j = np.repeat(np.arange(len(sims)), per)
        entry_p = rng.integers(0, n_patterns, len(entry_j))
        w = kernel(sims, DEFAULT_PARAMS.bandwidth)[entry_j] / per[entry_j]
        cids, cws = cluster_mix(
            rng.integers(0, n_clusters, len(sims)), kernel(sims, 0.1), DEFAULT_PARAMS.n_clusters
        )
        started = time.perf_counter()
        ranked = rank(stats, entry_p, w, cids, cws, k)
        times.append(time.perf_counter() - started)
        assert len(ranked.pattern) == min(k, n_patterns)
        values = rng.random(n_patterns)
        started = time.perf_counter()
        np.argsort(values)
        floor.append(time.perf_counter() - started)
    p50 = statistics.median(times) * 1e3
    return {
        "patterns": n_patterns,
        "rank_p50_ms": round(p50, 2),
        "rank_p95_ms": round(float(np.percentile(times, 95)) * 1e3, 2),
        "argsort_p50_ms": round(statistics.median(floor) * 1e3, 2),
        "ratio_to_argsort": round(p50 / (statistics.median(floor) * 1e3), 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ranking_speed", description=__doc__)
    parser.add_argument(
        "--sizes", default="10000,100000,1000000", help="pattern counts, comma-separated"
    )
    parser.add_argument("--repeats", type=int, default=50, help="timed queries per size")
    parser.add_argument("-k", type=int, default=10, help="rows per query (default 10)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results = [measure(int(s), args.repeats, args.k) for s in args.sizes.split(",")]
    if args.json:
        print(json.dumps(results))
    else:
        print(f"{'patterns':>10} {'p50 ms':>8} {'p95 ms':>8} {'argsort p50':>12} {'ratio':>6}")
        for r in results:
            print(
                f"{r['patterns']:>10} {r['rank_p50_ms']:>8} {r['rank_p95_ms']:>8} "
                f"{r['argsort_p50_ms']:>12} {r['ratio_to_argsort']:>6}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
