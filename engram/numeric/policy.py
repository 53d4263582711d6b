"""Off-policy value of a recommendation strategy from logged outcomes (IPS, SNIPS).

Each logged outcome i has a reward r_i (outcome quality), the probability p_i that the
logging strategy showed the used pattern first, and the probability q_i that a target
strategy would have. Inverse propensity scoring estimates the target's mean reward as
mean(r·q/p); the self-normalised form sum(r·q/p) / sum(q/p) trades a little bias for much
less variance. Both assume the agent used what was shown first when it followed advice
and that p_i > 0; outcomes whose used pattern had p_i = 0 say nothing about any strategy
and are left out (their count is reported). Intervals: percentile bootstrap over outcomes.
"""

from __future__ import annotations

import numpy as np

__all__ = ["policy_values"]


def _estimates(r: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    total = w.sum()
    ips = float((r * w).mean()) if len(r) else float("nan")
    snips = float((r * w).sum() / total) if total > 0 else float("nan")
    return ips, snips


def policy_values(
    reward: np.ndarray,
    logging_propensity: np.ndarray,
    target_propensity: np.ndarray,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    mass: float = 0.95,
) -> dict[str, float]:
    """IPS and SNIPS estimates of a target strategy's mean reward, with percentile
    bootstrap intervals holding `mass`, over the outcomes with a positive logging
    propensity; also the mean reward the agent actually got on them."""
    r = np.asarray(reward, dtype=float)
    p = np.asarray(logging_propensity, dtype=float)
    q = np.asarray(target_propensity, dtype=float)
    keep = p > 0
    r, p, q = r[keep], p[keep], q[keep]
    n = len(r)
    nan = float("nan")
    out = {
        "n_used": float(n),
        "n_skipped": float((~keep).sum()),
        "agent_mean": float(r.mean()) if n else nan,
        "ips": nan,
        "ips_low": nan,
        "ips_high": nan,
        "snips": nan,
        "snips_low": nan,
        "snips_high": nan,
        "effective_n": nan,
    }
    if n == 0:
        return out
    w = q / p
    out["ips"], out["snips"] = _estimates(r, w)
    out["effective_n"] = float(w.sum() ** 2 / (w**2).sum()) if (w**2).sum() > 0 else 0.0
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(n_boot, n))
    rw, ww = (r * w)[draws], w[draws]
    ips_boot = rw.mean(axis=1)
    sums = ww.sum(axis=1)
    snips_boot = np.divide(rw.sum(axis=1), sums, out=np.full(n_boot, np.nan), where=sums > 0)
    tail = (1 - mass) / 2 * 100
    out["ips_low"], out["ips_high"] = (
        float(x) for x in np.percentile(ips_boot, [tail, 100 - tail])
    )
    finite = snips_boot[np.isfinite(snips_boot)]
    if len(finite):
        low, high = np.percentile(finite, [tail, 100 - tail])
        out["snips_low"], out["snips_high"] = float(low), float(high)
    return out
