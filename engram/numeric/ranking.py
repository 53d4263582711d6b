"""Rank patterns for a task: relevance x success^exponent (README "How predict ranks").

Two questions are answered separately and multiplied, because each alone fails on real
histories: success estimates of the patterns near a task differ by 0.01-0.02 on one or two
events each (ranking by them is noise), and "what was used for tasks like this" alone
recommends what is common, whether or not it works.

relevance(p)  how likely p is the pattern chosen for this task: a kernel-weighted vote of
              the `neighbours` nearest past task texts (weight exp(-(1 - cos) / bandwidth),
              each text's vote split over the patterns it was used with), smoothed with
              `cluster_weight` pseudo-votes toward p's usage share in the task's context
              clusters, which is itself smoothed with `base_weight` pseudo-events toward
              p's global usage share (add-one, so every known pattern stays a candidate):

                  base(p)    = (N_p + 1) / (N + P)
                  cluster(p) = sum_c w_c (n_cp + base_weight * base(p)) / (n_c + base_weight)
                  relevance  = (V_p + cluster_weight * cluster(p)) / (V + cluster_weight)

success(p)    the Beta-binomial shrinkage of pattern_predictions, cell -> pattern -> global
              with `prior_strength` pseudo-events at each level, mixed over the task's
              clusters with the same weights w_c:

                  m_p        = (S_p + s g) / (N_p + s)
                  success_cp = (S_cp + s m_p) / (n_cp + s)

sharing       with several projects, `stats` holds one project's usage and `stats.shared`
              every project's (same pattern positions). Relevance stays the project's
              own; success shrinks in four levels, each with `prior_strength`:
              (project, cluster, pattern) -> (cluster, pattern) in the OTHER projects ->
              pattern across projects -> global mean across projects. The other
              projects' outcomes are first moved by d = (the project's mean quality -
              theirs) x N^own / (N^own + s) (the project's mean shrunk toward theirs,
              so a handful of events does not shift everything by its noise), so what
              is borrowed is how much better or worse a pattern did there than usual,
              not the other projects' baseline (real histories differ in baseline:
              bench/project_sharing.py), and each of their events counts
              w(n) of one of the project's own, where n is the project's OWN events
              at that level (all of them, the pattern's, the cell's) and k =
              share_fade: the borrowed weight fades as the project's own evidence
              grows, so a young project leans on the others and an old one hardly
              at all (bench/project_sharing.py: a constant weight cost the older
              project's ranking a little while giving the young one nothing):

                  w(n)       = share_weight * k / (k + n)   (share_weight when n = 0;
                               k = 0: borrow only where the project has none)
                  S'         = clip(S^other + d n^other, 0, n^other)   (every level)
                  g          = (S^own + w(N^own) S'^total) / (N^own + w(N^own) N^other)
                  m_p        = (S_p^own + w(N_p^own) S'_p + s g)
                               / (N_p^own + w(N_p^own) n_p^other + s)
                  m_cp^other = (w(n_cp^own) S'_cp + s m_p) / (w(n_cp^own) n_cp^other + s)
                  success_cp = (S_cp^own + s m_cp^other) / (n_cp^own + s)

              (without a cluster: own pattern -> other projects' pattern -> g). With no
              other project (or w = 0) this is exactly the formula above: a
              single-project answer does not change. `borrowed` counts the other
              projects' events a row leaned on (times w).

score(p)      relevance(p) * success(p) ** exponent. A pattern never used for tasks like
              this keeps only the tiny base relevance, so its global mean cannot lift it
              to the top; a pattern with 2 lucky uses has its success pulled to m_p and g
              and a small vote, so it does not outrank one with 200 good uses.

Pure numpy (no engram imports): the same functions serve `engram predict` (through
engram/query/predict.py) and the walk-forward `engram evaluate`, so the figures that
evaluation reports describe exactly the model that answers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_PARAMS",
    "SPARSE_ABOVE",
    "Ranked",
    "RankingParams",
    "UsageStats",
    "candidates",
    "cluster_mix",
    "full_scores",
    "kernel",
    "neighbour_votes",
    "rank",
    "usage_stats",
]

FALLBACK_NEIGHBOURS, FALLBACK_CLUSTER, FALLBACK_GLOBAL = "", "cluster", "global"


@dataclass(frozen=True)
class RankingParams:
    """The ranking's knobs; DEFAULT_PARAMS were chosen by `python -m bench.tune_ranking`
    on data the tests do not check (README "How predict ranks")."""

    neighbours: int = 80  # nearest past task texts that vote
    bandwidth: float = 0.2  # kernel exp(-(1 - cos) / bandwidth)
    cluster_weight: float = 0.5  # pseudo-votes toward the cluster usage share
    base_weight: float = 5.0  # pseudo-events toward the global usage share, per cluster
    exponent: float = 4.0  # how hard success discounts relevance
    n_clusters: int = 3  # context clusters of the neighbourhood that are mixed
    prior_strength: float = 5.0  # pseudo-events of the success shrinkage (dbt var)
    share_weight: float = 0.0  # what one other project's event counts for (dbt var; 0:
    # projects apart, as no weight was harmless on real histories: bench.project_sharing)
    share_fade: float = 100.0  # own events at which that weight halves (dbt var)


DEFAULT_PARAMS = RankingParams()


# the global mean as a prior is rounded to 1 / PRIOR_MEAN_STEPS: dbt var prior_mean_steps
# (tests/test_ranking.py checks they agree)
PRIOR_MEAN_STEPS = 100


def prior_mean(global_mean: float, steps: int = PRIOR_MEAN_STEPS) -> float:
    """The global mean on the prior's grid, floor(g * steps + 0.5) / steps: the same double
    arithmetic as macros/shrinkage.sql's prior_mean, so query-time scores equal the marts'.
    Why a grid: an exact mean moves with every event and would make a refresh recompute
    every pattern_predictions row (issue 18)."""
    return math.floor(global_mean * steps + 0.5) / steps


@dataclass
class UsageStats:
    """Past usage, indexed by pattern position 0..P-1: the success model's counts.

    cells_* hold the (cluster, pattern) cells sorted by cluster, so one cluster's cells
    are the slice cell_start[c]:cell_stop[c] (found by searchsorted).
    """

    n_events: np.ndarray  # N_p, events per pattern
    sum_quality: np.ndarray  # S_p, summed outcome quality per pattern
    cell_cluster: np.ndarray  # sorted cluster id of each cell
    cell_pattern: np.ndarray  # pattern position of each cell
    cell_n: np.ndarray  # n_cp
    cell_sum: np.ndarray  # S_cp
    global_mean: float  # the exact event-weighted mean (the Brier reference baseline)
    # the success prior shrinks toward global_mean on a grid of 1 / prior_steps (prior_mean)
    prior_steps: int = PRIOR_MEAN_STEPS
    memo: dict[str, Any] = field(default_factory=dict, repr=False)  # per-stats constants
    # every project's usage (this one's included) when these are one project's: the
    # success shrinkage then borrows from the other projects (module docstring)
    shared: UsageStats | None = field(default=None, repr=False)

    @property
    def prior_mean(self) -> float:
        """g of the module docstring: global_mean on the prior's grid."""
        return prior_mean(self.global_mean, self.prior_steps)

    @property
    def n_patterns(self) -> int:
        return len(self.n_events)

    @property
    def total_events(self) -> float:
        if "total" not in self.memo:
            self.memo["total"] = float(self.n_events.sum())
        return self.memo["total"]

    def quiet_order(self, params: RankingParams) -> np.ndarray:
        """Patterns by the score they get when no neighbour voted for them and they have
        no cell in the task's clusters: a constant times base(p) * m_p^exponent, the same
        order for every task. Computed once per (exponent, prior_strength)."""
        key = f"order:{params.exponent}:{params.prior_strength}"
        if key not in self.memo:
            s = params.prior_strength
            m_p = (self.sum_quality + s * self.prior_mean) / (self.n_events + s)
            value = (self.n_events + 1.0) * np.power(m_p, params.exponent)
            self.memo[key] = np.lexsort((np.arange(self.n_patterns), -value))
        return self.memo[key]

    def cells(self, cluster: int) -> slice:
        lo = int(np.searchsorted(self.cell_cluster, cluster, side="left"))
        hi = int(np.searchsorted(self.cell_cluster, cluster, side="right"))
        return slice(lo, hi)


def usage_stats(
    n_patterns: int,
    pattern: np.ndarray,
    cluster: np.ndarray,
    quality: np.ndarray,
    global_default: float = 0.5,
    prior_steps: int = PRIOR_MEAN_STEPS,
) -> UsageStats:
    """UsageStats from one row per event (pattern position, context cluster, quality)."""
    pattern = np.asarray(pattern, dtype=np.int64)
    cluster = np.asarray(cluster, dtype=np.int64)
    quality = np.asarray(quality, dtype=np.float64)
    n = np.bincount(pattern, minlength=n_patterns).astype(np.float64)
    s = np.bincount(pattern, weights=quality, minlength=n_patterns)
    key = cluster * n_patterns + pattern
    uniq, inverse = np.unique(key, return_inverse=True)
    cell_n = np.bincount(inverse, minlength=len(uniq)).astype(np.float64)
    cell_s = np.bincount(inverse, weights=quality, minlength=len(uniq))
    total = float(n.sum())
    g = float(s.sum() / total) if total > 0 else global_default
    return UsageStats(
        n, s, uniq // n_patterns, uniq % n_patterns, cell_n, cell_s, g, prior_steps=prior_steps
    )


def kernel(similarity: np.ndarray, bandwidth: float) -> np.ndarray:
    """Neighbour weight exp(-(1 - cos) / bandwidth): 1 for the same text, e^-1 at
    `bandwidth` cosine below it. Exponential, not linear, because on real task texts the
    nearest few carry most of the signal and the tenth is often unrelated."""
    if bandwidth <= 0:
        raise ValueError(f"bandwidth must be > 0, got {bandwidth}")
    sim = np.clip(np.asarray(similarity, dtype=np.float64), -1.0, 1.0)
    return np.exp(-(1.0 - sim) / bandwidth)


def cluster_mix(
    clusters: np.ndarray, weights: np.ndarray, top: int
) -> tuple[np.ndarray, np.ndarray]:
    """The task's context clusters: the `top` clusters holding most neighbour weight
    (pass only neighbours that have a cluster), weights summing to 1; empty if none."""
    clusters = np.asarray(clusters, dtype=np.int64)
    weights = np.asarray(weights, dtype=np.float64)
    if len(clusters) == 0 or weights.sum() <= 0:
        return np.zeros(0, np.int64), np.zeros(0)
    ids, inverse = np.unique(clusters, return_inverse=True)
    total = np.bincount(inverse, weights=weights)
    order = np.argsort(-total, kind="stable")[:top]
    w = total[order]
    return ids[order].astype(np.int64), w / w.sum()


@dataclass
class Ranked:
    """rank()'s answer, best first: pattern positions and why each is there."""

    pattern: np.ndarray  # positions into the UsageStats arrays
    score: np.ndarray
    relevance: np.ndarray
    vote: np.ndarray  # neighbour vote share V_p / V (0 when no neighbour used it)
    success: np.ndarray  # posterior mean of the success model
    alpha: np.ndarray  # Beta posterior shapes, for the interval
    beta: np.ndarray
    cluster_events: np.ndarray  # n_cp summed over the task's clusters (weighted)
    fallback: np.ndarray  # "" (neighbours voted), "cluster" or "global"
    borrowed: np.ndarray | None = None  # other projects' events behind the success level


def _dense(
    stats: UsageStats,
    vote_pattern: np.ndarray,
    vote_weight: np.ndarray,
    clusters: np.ndarray,
    cluster_weights: np.ndarray,
    params: RankingParams,
    subset: np.ndarray | None = None,
) -> tuple[Any, ...]:
    """The formulas of the module docstring for every pattern, or for the sorted pattern
    positions in `subset` only (then every array is indexed like subset)."""
    P = stats.n_patterns
    s = params.prior_strength
    g = stats.prior_mean
    vp = np.asarray(vote_pattern, dtype=np.int64)
    vw = np.asarray(vote_weight, dtype=np.float64)
    v_total = float(vw.sum())

    def local(patterns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positions in the output, mask of entries kept) for pattern positions."""
        if subset is None:
            return patterns, np.ones(len(patterns), bool)
        pos = np.minimum(np.searchsorted(subset, patterns), max(len(subset) - 1, 0))
        keep = subset[pos] == patterns if len(subset) else np.zeros(len(patterns), bool)
        return pos[keep], keep

    size = P if subset is None else len(subset)
    where, keep = local(vp)
    votes = np.bincount(where, weights=vw[keep], minlength=size)
    n_events = stats.n_events if subset is None else stats.n_events[subset]
    sum_quality = stats.sum_quality if subset is None else stats.sum_quality[subset]
    base = (n_events + 1.0) / (stats.total_events + P)
    m_p = (sum_quality + s * g) / (n_events + s)
    b = params.base_weight
    if len(clusters):
        cluster_share = np.zeros(size)
        alpha = np.zeros(size)
        beta = np.zeros(size)
        cell_n = np.zeros(size)
        for c, w in zip(clusters, cluster_weights, strict=True):
            sl = stats.cells(int(c))
            n_cp, s_cp = stats.cell_n[sl], stats.cell_sum[sl]
            n_c = float(n_cp.sum())  # the whole cluster, not only the subset
            idx, kept = local(stats.cell_pattern[sl])
            n_cp, s_cp = n_cp[kept], s_cp[kept]
            share = b * base / (n_c + b)
            share[idx] += n_cp / (n_c + b)
            cluster_share += w * share
            cell_n[idx] += w * n_cp
            a_c = s * m_p
            b_c = s * (1.0 - m_p)
            a_c[idx] += s_cp
            b_c[idx] += n_cp - s_cp
            alpha += w * a_c
            beta += w * b_c
    else:  # no cluster: the pattern level of the shrinkage, and the global usage share
        cluster_share = base
        # the pattern level: its own events on the global prior (mean m_p)
        alpha = sum_quality + s * g
        beta = (n_events - sum_quality) + s * (1.0 - g)
        cell_n = np.zeros(size)
    a = params.cluster_weight
    relevance = (votes + a * cluster_share) / (v_total + a)
    borrowed = np.zeros(size)
    if stats.shared is not None:
        alpha, beta, borrowed = _shared_posterior(
            stats, n_events, sum_quality, clusters, cluster_weights, params, subset, local
        )
    success = alpha / np.maximum(alpha + beta, 1e-12)
    return votes, v_total, relevance, success, alpha, beta, cell_n, borrowed


def _shared_posterior(
    stats: UsageStats,
    n_own: np.ndarray,
    s_own: np.ndarray,
    clusters: np.ndarray,
    cluster_weights: np.ndarray,
    params: RankingParams,
    subset: np.ndarray | None,
    local: Any,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(alpha, beta, borrowed events) of the four-level shrinkage (module docstring):
    the project's own cell on the other projects' cell, on the pattern across projects,
    on the global mean of all projects. Every other project's event counts
    w(n) = share_weight * share_fade / (share_fade + n) of one of the project's own,
    n being the project's own events at that level (share_weight 0: the project alone)."""
    shared = stats.shared
    assert shared is not None
    s, lam, k = params.prior_strength, params.share_weight, params.share_fade

    def fade(n_own: Any) -> Any:
        """w(n): the share weight where the project has n events of its own."""
        return np.where(n_own > 0, lam * k / np.maximum(k + n_own, 1e-300), lam)

    n_all = shared.n_events if subset is None else shared.n_events[subset]
    s_all = shared.sum_quality if subset is None else shared.sum_quality[subset]
    own_total, own_sum = float(stats.n_events.sum()), float(stats.sum_quality.sum())
    all_total, all_sum = float(shared.n_events.sum()), float(shared.sum_quality.sum())
    other_total, other_sum = max(all_total - own_total, 0.0), max(all_sum - own_sum, 0.0)
    shift = 0.0
    if own_total > 0 and other_total > 0:
        # the project's own mean is itself shrunk toward theirs (s pseudo-events), so
        # a project with a handful of events does not move everything by their noise
        shift = (own_sum / own_total - other_sum / other_total) * own_total / (own_total + s)
    n_other_p = np.maximum(n_all - n_own, 0.0)
    s_other_p = np.clip(s_all - s_own + shift * n_other_p, 0.0, n_other_p)
    lam_g = float(fade(np.float64(own_total)))
    total = own_total + lam_g * other_total
    g_sum = own_sum + lam_g * min(max(other_sum + shift * other_total, 0.0), other_total)
    g = prior_mean(g_sum / total, stats.prior_steps) if total > 0 else shared.prior_mean
    size = len(n_own)
    lam_p = fade(n_own)
    if not len(clusters):
        m_other = (lam_p * s_other_p + s * g) / (lam_p * n_other_p + s)
        alpha = s_own + s * m_other
        beta = (n_own - s_own) + s * (1.0 - m_other)
        return alpha, beta, lam_p * n_other_p
    m_p = (s_own + lam_p * s_other_p + s * g) / (n_own + lam_p * n_other_p + s)
    alpha, beta, borrowed = np.zeros(size), np.zeros(size), np.zeros(size)
    for c, w in zip(clusters, cluster_weights, strict=True):
        own_n, own_s = np.zeros(size), np.zeros(size)
        sl = stats.cells(int(c))
        idx, kept = local(stats.cell_pattern[sl])
        own_n[idx] += stats.cell_n[sl][kept]
        own_s[idx] += stats.cell_sum[sl][kept]
        all_n, all_s = np.zeros(size), np.zeros(size)
        sl = shared.cells(int(c))
        idx, kept = local(shared.cell_pattern[sl])
        all_n[idx] += shared.cell_n[sl][kept]
        all_s[idx] += shared.cell_sum[sl][kept]
        other_n = np.maximum(all_n - own_n, 0.0)
        other_s = np.clip(all_s - own_s + shift * other_n, 0.0, other_n)
        lam_c = fade(own_n)
        m_other = (lam_c * other_s + s * m_p) / (lam_c * other_n + s)
        alpha += w * (own_s + s * m_other)
        beta += w * ((own_n - own_s) + s * (1.0 - m_other))
        borrowed += w * lam_c * other_n
    return alpha, beta, borrowed


SPARSE_ABOVE = 4096  # patterns: above this, rank() scores only the candidates


def candidates(
    stats: UsageStats,
    vote_pattern: np.ndarray,
    clusters: np.ndarray,
    k: int,
    params: RankingParams,
) -> np.ndarray:
    """Sorted pattern positions that hold the exact top k (mean ranking): those voted for,
    those with a cell in the task's clusters, and the first k + that many of the quiet
    order. Every other pattern scores a task constant times its quiet-order value, so
    none of them can beat the k best quiet ones included here."""
    parts = [np.asarray(vote_pattern, dtype=np.int64)]
    parts += [stats.cell_pattern[stats.cells(int(c))] for c in clusters]
    active = np.unique(np.concatenate(parts))
    quiet = stats.quiet_order(params)[: k + len(active)]
    return np.union1d(active, quiet)


def rank(
    stats: UsageStats,
    vote_pattern: np.ndarray,
    vote_weight: np.ndarray,
    clusters: np.ndarray,
    cluster_weights: np.ndarray,
    k: int,
    params: RankingParams = DEFAULT_PARAMS,
    *,
    rank_by: str = "mean",
) -> Ranked:
    """The k best patterns (k of them whenever k patterns exist) for one task.

    vote_pattern/vote_weight: one entry per (neighbour text, pattern used there), weight =
    kernel(similarity) * that pattern's share of the text's events. clusters/weights: the
    task's context clusters (cluster_mix). rank_by "lower" discounts relevance by a
    lower bound of success (mean - 1.645 sd of the Beta posterior) instead of the mean:
    risk-averse, it prefers well-evidenced patterns.
    """
    subset = None
    # the quiet order assumes success = m_p, which sharing breaks: score every pattern
    if rank_by == "mean" and stats.n_patterns > SPARSE_ABOVE and stats.shared is None:
        subset = candidates(stats, vote_pattern, clusters, k, params)
    votes, v_total, relevance, success, alpha, beta, cell_n, borrowed = _dense(
        stats, vote_pattern, vote_weight, clusters, cluster_weights, params, subset
    )
    if rank_by == "lower":
        value = success - 1.645 * np.sqrt(success * (1.0 - success) / (alpha + beta + 1.0))
    elif rank_by == "mean":
        value = success
    else:
        raise ValueError(f"rank_by must be 'mean' or 'lower', got {rank_by!r}")
    score = relevance * np.power(np.clip(value, 0.0, 1.0), params.exponent)
    P = len(score)
    k = min(k, P)
    if k == 0:
        top = np.zeros(0, np.int64)
    elif k < P:
        part = np.argpartition(-score, k - 1)[:k]
        top = part[np.lexsort((part, -score[part]))]
    else:
        top = np.lexsort((np.arange(P), -score))
    positions = top if subset is None else subset[top]
    fallback = np.where(
        votes[top] > 0,
        FALLBACK_NEIGHBOURS,
        np.where(cell_n[top] > 0, FALLBACK_CLUSTER, FALLBACK_GLOBAL),
    )
    return Ranked(
        pattern=positions,
        score=score[top],
        relevance=relevance[top],
        vote=votes[top] / v_total if v_total > 0 else np.zeros(len(top)),
        success=success[top],
        alpha=alpha[top],
        beta=beta[top],
        cluster_events=cell_n[top],
        fallback=fallback.astype(object),
        borrowed=borrowed[top],
    )


def full_scores(
    stats: UsageStats,
    vote_pattern: np.ndarray,
    vote_weight: np.ndarray,
    clusters: np.ndarray,
    cluster_weights: np.ndarray,
    params: RankingParams = DEFAULT_PARAMS,
) -> tuple[np.ndarray, np.ndarray]:
    """(score, success) for every pattern: what evaluation needs to find the rank of the
    pattern actually used and the success estimate it had."""
    _, _, relevance, success, _, _, _, _ = _dense(
        stats, vote_pattern, vote_weight, clusters, cluster_weights, params
    )
    return relevance * np.power(success, params.exponent), success


def neighbour_votes(
    similarity: np.ndarray,
    entry_neighbour: np.ndarray,
    entry_pattern: np.ndarray,
    entry_events: np.ndarray,
    bandwidth: float,
) -> tuple[np.ndarray, np.ndarray]:
    """(vote_pattern, vote_weight) for rank(): neighbour j's kernel weight split over the
    patterns used with its text in proportion to their events there (entries are one
    row per (neighbour, pattern) with `entry_events` events)."""
    entry_neighbour = np.asarray(entry_neighbour, dtype=np.int64)
    events = np.asarray(entry_events, dtype=np.float64)
    if len(entry_neighbour) == 0:
        return np.zeros(0, np.int64), np.zeros(0)
    per_neighbour = np.bincount(entry_neighbour, weights=events, minlength=len(similarity))
    w = kernel(similarity, bandwidth)[entry_neighbour] * events
    w = w / np.maximum(per_neighbour[entry_neighbour], 1e-12)
    return np.asarray(entry_pattern, dtype=np.int64), w
