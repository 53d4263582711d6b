"""What should I try for this task? predict's ranking turned into a logged decision.

predict (engram/query/predict.py) gives each candidate pattern a Beta posterior of its
success for the task. recommend adds what a decision needs:

- the outcomes recorded since the last build (the overlay) update each posterior at once,
  and patterns recorded since the build that are close to the task join as candidates
  with the global mean as their prior;
- a pool: the candidates with the highest predict score (see POOL_FACTOR);
- a strategy, in predict's score relevance x success^exponent (engram.numeric.ranking):
  `best` takes the posterior mean as success (expected outcome), `cautious` the lower
  end of the 90% credible interval, `explore` one Thompson draw from each posterior
  (seeded; the seed is logged, so the ranking can be replayed);
- the propensity of each shown candidate: the probability each strategy had of showing it
  first (1/0 for the deterministic ones; Monte Carlo over Thompson draws for explore),
  which lets the marts estimate off-policy what each strategy would have earned;
- a warning on a candidate whose trend is declining (marts.pattern_trend_summary);
- a recommendation_id, and the whole decision logged to the journal, so outcomes that
  cite the id can be linked back to what was shown (marts.recommendation_*).
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from engram.numeric.posterior import beta_interval
from engram.query import predict as predict_q
from engram.query.errors import InvalidQuery, check_k
from engram.query.jsonable import records
from engram.query.overlay import Overlay, built_offsets
from engram.query.reader import Reader
from ingest.journal import Journal

STRATEGIES = ("best", "cautious", "explore")
CANDIDATE_POOL = 30  # predict's top candidates, before the outcomes since the build
# The strategies choose among the max(POOL_FACTOR * k, MIN_POOL) candidates with the
# highest predict score (plus every close pattern recorded since the build): Thompson
# draws over 30 candidates, most with a weak prior, pick a long shot most of the time
# (planted data: explore's regret was above random's over 40 tasks); over the plausible
# ones it explores where it matters.
POOL_FACTOR = 2
MIN_POOL = 10
NEW_PATTERN_MIN_SIMILARITY = 0.45  # a pattern recorded since the build joins when this close
PROPENSITY_DRAWS = 4000  # Monte Carlo draws for explore's propensities
CAUTIOUS_MASS = 0.9  # cautious ranks by the lower end of this central interval


@dataclass
class Recommendation:
    """The decision: shown candidates in order, why, and the id outcomes should cite."""

    recommendation_id: str
    task: str
    strategy: str
    seed: int
    created_at: str
    patterns: pd.DataFrame
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "recommendation_id": self.recommendation_id,
            "task": self.task,
            "strategy": self.strategy,
            "seed": self.seed,
            "created_at": self.created_at,
            "recommendations": records(self.patterns),
            "warnings": self.warnings,
            "notes": self.notes,
        }


def check_strategy(strategy: Any) -> str:
    if strategy not in STRATEGIES:
        raise InvalidQuery(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    return str(strategy)


def candidates(
    reader: Reader, overlay: Overlay, task: str, project: str | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """predict's candidate pool with Beta shapes (alpha, beta), updated by the outcomes
    recorded since the build, plus close patterns recorded since the build. `project`
    as predict's (the current project by default; "*" pooled)."""
    prediction = predict_q.predict(reader, task, CANDIDATE_POOL, project=project)
    pool = prediction.patterns
    n = pool["effective_n"].to_numpy(dtype=float)
    mean = pool["predicted_success"].to_numpy(dtype=float)
    frame = pd.DataFrame(
        {
            "pattern_id": pool["pattern_id"].astype(str),
            "description": pool["description"],
            "relevance": pool["relevance"].to_numpy(dtype=float),
            "alpha": mean * n,
            "beta": (1 - mean) * n,
            "built": True,
            "borrowed": pool.get("borrowed", ""),
        }
    )
    overlay.refresh(built_offsets(reader))
    notes = list(prediction.notes)
    if overlay.patterns:
        ids, matrix = overlay.pattern_matrix(reader.query_embedder.embedder.encode)
        similarity = matrix @ reader.embed(task)
        close = [(i, s) for i, s in zip(ids, similarity, strict=True)]
        close = [(i, s) for i, s in close if s >= NEW_PATTERN_MIN_SIMILARITY]
        if close:
            g, s = predict_q.global_mean(reader), predict_q.prior_strength()
            # a pattern recorded since the build has no uses to measure its relevance by:
            # it counts as an ordinary candidate of the pool (median relevance)
            typical = float(frame["relevance"].median()) if len(frame) else 1.0
            fresh = pd.DataFrame(
                {
                    "pattern_id": [i for i, _ in close],
                    "description": [overlay.patterns[i].description for i, _ in close],
                    "relevance": typical,
                    "alpha": g * s,
                    "beta": (1 - g) * s,
                    "built": False,
                    "borrowed": "",
                }
            )
            frame = frame[~frame["pattern_id"].isin(fresh["pattern_id"])]
            frame = pd.concat([frame, fresh], ignore_index=True)
    counts = overlay.pending_counts()
    frame = frame.merge(counts, on="pattern_id", how="left")
    frame["pending_outcomes"] = frame["pending_outcomes"].fillna(0).astype(int)
    quality_sum = frame["pending_quality_sum"].fillna(0.0)
    frame["alpha"] += quality_sum
    frame["beta"] += frame["pending_outcomes"] - quality_sum
    frame["alpha"] = frame["alpha"].clip(lower=1e-6)  # a point mass still samples
    frame["beta"] = frame["beta"].clip(lower=1e-6)
    return frame.drop(columns=["pending_quality_sum"]), notes


def _ranked(frame: pd.DataFrame, success: np.ndarray) -> np.ndarray:
    """predict's score: relevance x success^exponent (engram.numeric.ranking)."""
    exponent = predict_q.ranking_params().exponent
    relevance = frame["relevance"].to_numpy(dtype=float)
    return relevance * np.power(np.clip(success, 0.0, 1.0), exponent)


def successes(frame: pd.DataFrame, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The success each strategy ranks by: posterior mean, lower credible bound, and one
    Thompson draw (from `rng`)."""
    a = frame["alpha"].to_numpy(dtype=float)
    b = frame["beta"].to_numpy(dtype=float)
    low, _high = beta_interval(a, b, CAUTIOUS_MASS)
    return {"best": a / (a + b), "cautious": low, "explore": rng.beta(a, b)}


def scores(frame: pd.DataFrame, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Each strategy's score per candidate: predict's relevance x success^exponent with
    the strategy's success (mean, lower bound, Thompson draw)."""
    return {name: _ranked(frame, value) for name, value in successes(frame, rng).items()}


def propensities(frame: pd.DataFrame, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """P(candidate is shown first) under each strategy. best and cautious are
    deterministic (ties: the first in predict's order); explore's is the share of
    PROPENSITY_DRAWS Thompson rounds each candidate wins."""
    a = frame["alpha"].to_numpy(dtype=float)
    b = frame["beta"].to_numpy(dtype=float)
    n = len(frame)
    if n == 0:
        return {name: np.zeros(0) for name in STRATEGIES}
    low, _high = beta_interval(a, b, CAUTIOUS_MASS)
    out = {}
    for name, success in (("best", a / (a + b)), ("cautious", low)):
        first = np.zeros(n)
        first[int(np.argmax(_ranked(frame, success)))] = 1.0
        out[name] = first
    draws = rng.beta(a, b, size=(PROPENSITY_DRAWS, n))
    relevance = frame["relevance"].to_numpy(dtype=float)
    exponent = predict_q.ranking_params().exponent
    wins = np.bincount(np.argmax(relevance * draws**exponent, axis=1), minlength=n)
    out["explore"] = wins / PROPENSITY_DRAWS
    return out


def declining(reader: Reader, ids: list[str]) -> dict[str, str]:
    """pattern_id -> warning for shown candidates whose trend is declining."""
    if not ids or not reader.has("marts.pattern_trend_summary"):
        return {}
    rows = reader.rows(
        """
        select pattern_id, quality_slope_per_week, slope_t_stat, n_events
        from marts.pattern_trend_summary
        where direction = 'declining' and pattern_id in (select unnest(?::varchar[]))
        """,
        [ids],
    )
    return {
        str(pid): (
            f"{pid} is declining: outcome quality falls {abs(slope):.3f} per week "
            f"(t = {t:.1f} over {n} events); prefer an alternative if one is close"
        )
        for pid, slope, t, n in rows
    }


def recommend(
    reader: Reader,
    overlay: Overlay,
    task: str,
    k: int = 5,
    *,
    strategy: str = "best",
    seed: int | None = None,
    log: bool = True,
    project: str | None = None,
) -> Recommendation:
    """Decide which patterns to show for `task` (see the module docstring), log the
    decision to the journal (unless log=False) and return it. `project`: whose memory
    answers (predict's rule: the current project by default, "*" every project); a row
    whose success leans on other projects says so in `borrowed`."""
    k = check_k(k)
    strategy = check_strategy(strategy)
    if seed is None:
        seed = secrets.randbelow(2**31)
    elif isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InvalidQuery(f"seed must be a non-negative integer, got {seed!r}")
    frame, notes = candidates(reader, overlay, task, project)
    mean = frame["alpha"] / (frame["alpha"] + frame["beta"])
    best_score = pd.Series(_ranked(frame, mean.to_numpy()), index=frame.index)
    plausible = best_score.rank(ascending=False, method="first") <= max(POOL_FACTOR * k, MIN_POOL)
    frame = frame[plausible | ~frame["built"]].reset_index(drop=True)
    rng = np.random.default_rng(seed)
    success = successes(frame, rng)
    by_strategy = {name: _ranked(frame, value) for name, value in success.items()}
    chance = propensities(frame, np.random.default_rng([seed, 1]))
    frame = frame.assign(
        score=by_strategy[strategy],
        predicted_success=success["best"],
        ci_low=success["cautious"],
        propensity=chance[strategy],
        propensity_best=chance["best"],
        propensity_cautious=chance["cautious"],
        propensity_explore=chance["explore"],
        effective_n=frame["alpha"] + frame["beta"],
    )
    order = np.lexsort((-frame["predicted_success"].to_numpy(), -frame["score"].to_numpy()))
    shown = frame.iloc[order].head(k).reset_index(drop=True)
    shown.insert(0, "rank", np.arange(1, len(shown) + 1))
    warnings_by_id = declining(reader, shown["pattern_id"].tolist())
    shown["declining"] = shown["pattern_id"].isin(list(warnings_by_id))
    shown = shown.drop(columns=["alpha", "beta"])
    front = ["rank", "pattern_id", "description", "score", "predicted_success", "ci_low"]
    shown = shown[front + [c for c in shown.columns if c not in front]]
    if shown.empty:
        notes.append("no candidate patterns for this task yet: record some with `engram record`")
    result = Recommendation(
        recommendation_id=f"rec-{uuid.uuid4().hex[:20]}",
        task=task.strip(),
        strategy=strategy,
        seed=int(seed),
        created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        patterns=shown,
        warnings=list(warnings_by_id.values()),
        notes=notes,
    )
    if log:
        Journal(reader.db_path).append("recommendation", log_record(result))
    return result


def log_record(result: Recommendation) -> dict[str, Any]:
    """The journal entry for a decision (ingest.journal.validate_recommendation reads it)."""
    columns = [
        "pattern_id",
        "rank",
        "score",
        "propensity",
        "propensity_best",
        "propensity_cautious",
        "propensity_explore",
        "predicted_success",
        "declining",
    ]
    return {
        "recommendation_id": result.recommendation_id,
        "created_at": result.created_at,
        "task": result.task,
        "strategy": result.strategy,
        "seed": result.seed,
        "candidates": records(result.patterns[columns]),
    }
