"""Does the loop learn, and do the impact marts measure it? The simulated agent against
planted truth, the off-policy estimator against planted strategy values, and the marts
against a recomputation from the raw log."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from engram.build import build
from engram.cli.simulate import PlantedTruth, simulate
from engram.numeric.policy import policy_values
from ingest.warehouse import connect_for_read


def test_ips_recovers_planted_strategy_values() -> None:
    """Logging shows arm A first with p = 0.7 and B with 0.3; the agent follows it. Arm
    means are 0.8 and 0.3, so "always B" is worth 0.3 and "always A" 0.8."""
    rng = np.random.default_rng(1)
    n = 4000
    used_a = rng.random(n) < 0.7
    reward = np.where(used_a, rng.random(n) < 0.8, rng.random(n) < 0.3).astype(float)
    logging = np.where(used_a, 0.7, 0.3)
    always_b = policy_values(reward, logging, np.where(used_a, 0.0, 1.0), n_boot=300)
    always_a = policy_values(reward, logging, np.where(used_a, 1.0, 0.0), n_boot=300)
    assert always_b["ips_low"] <= 0.3 <= always_b["ips_high"]
    assert always_a["snips_low"] <= 0.8 <= always_a["snips_high"]
    assert abs(always_a["snips"] - 0.8) < 0.03 and abs(always_b["ips"] - 0.3) < 0.03
    # the same numbers by hand: mean(r * q / p) and sum(r w) / sum(w)
    w = np.where(used_a, 0.0, 1.0) / logging
    assert always_b["ips"] == pytest.approx(float(np.mean(reward * w)))
    assert always_b["snips"] == pytest.approx(float((reward * w).sum() / w.sum()))
    assert always_b["agent_mean"] == pytest.approx(float(reward.mean()))
    skipped = policy_values(np.array([1.0, 0.0]), np.array([0.0, 1.0]), np.array([1.0, 1.0]))
    assert skipped["n_skipped"] == 1 and skipped["n_used"] == 1


@pytest.mark.slow
def test_simulated_agent_learns_and_the_marts_measure_it(
    planted_warehouse: Path, planted_data: Path, tmp_path: Path
) -> None:
    base = tmp_path / "base"
    shutil.copytree(planted_warehouse.parent, base)
    db = base / planted_warehouse.name
    result = simulate(
        db, planted_data / "truth.json", tmp_path / "agents", tasks=40, rebuild_every=0, seed=3
    )
    final = {agent: float(r[-1]) for agent, r in result.regret.items()}
    assert final["best"] < final["random"] and final["explore"] < final["random"], final
    assert result.mean_outcome["best"] > result.mean_outcome["random"]

    # the impact marts, built from explore's log, against a recomputation from raw rows
    explore_db = tmp_path / "agents" / "explore" / planted_warehouse.name
    build(explore_db, capture=True)
    con = connect_for_read(explore_db)
    try:
        n_log, n_recs = con.execute(
            "select count(*), count(distinct recommendation_id) from marts.recommendation_log"
        ).fetchone()  # type: ignore[misc]
        assert n_recs == 40 and n_log == 40 * 5
        raw = con.execute(
            """
            select e.outcome_quality, c.rank, c.propensity, c.propensity_best
            from raw.recommendation_links as l
            join raw.usage_events as e using (event_id)
            left join raw.recommendation_candidates as c
                on c.recommendation_id = l.recommendation_id and c.pattern_id = e.pattern_id
            """
        ).fetchall()
        arms = dict(
            con.execute(
                "select name, mean_outcome from marts.recommendation_impact "
                "where scope = 'overall' and kind = 'arm'"
            ).fetchall()
        )
        strategy = dict(
            con.execute(
                "select name, ips from marts.recommendation_impact where kind = 'strategy'"
            ).fetchall()
        )
    finally:
        con.close()
    assert len(raw) == 40
    top = [q for q, rank, _, _ in raw if rank == 1]
    assert top and arms["top"] == pytest.approx(float(np.mean(top)))
    reward = np.array([q for q, *_ in raw])
    logging = np.array([p or 0.0 for *_, p, _ in raw])
    target = np.array([b or 0.0 for *_, b in raw])
    keep = logging > 0
    assert strategy["best"] == pytest.approx(
        float(np.mean(reward[keep] * target[keep] / logging[keep]))
    )
    truth = PlantedTruth.load(planted_data / "truth.json")
    assert all(0 <= truth.best_success(t) <= 1 for t in truth.topics)
