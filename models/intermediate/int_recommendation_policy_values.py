"""What each recommendation strategy would have earned, estimated off-policy from the
logged outcomes (engram/numeric/policy.py: IPS, self-normalised IPS, bootstrap intervals).
A Python model because the bootstrap resamples outcomes, which SQL does poorly."""

import numpy as np
import pandas as pd

from engram.numeric.policy import policy_values

STRATEGIES = ("best", "cautious", "explore")
COLUMNS = (
    "n_used", "n_skipped", "agent_mean", "ips", "ips_low", "ips_high",
    "snips", "snips_low", "snips_high", "effective_n",
)  # fmt: skip


def model(dbt, session):
    dbt.config(materialized="table")
    outcomes = (
        dbt.ref("recommendation_outcomes")
        .project(
            "outcome_quality, logging_propensity, propensity_best, propensity_cautious, "
            "propensity_explore"
        )
        .df()
    )
    n_boot = int(dbt.config.get("policy_bootstrap_samples"))
    rows = []
    for strategy in STRATEGIES:
        values = policy_values(
            outcomes["outcome_quality"].to_numpy(dtype=float),
            outcomes["logging_propensity"].to_numpy(dtype=float),
            outcomes[f"propensity_{strategy}"].to_numpy(dtype=float),
            n_boot=n_boot,
            seed=0,
        )
        rows.append({"strategy": strategy, **values})
    frame = pd.DataFrame(rows, columns=["strategy", *COLUMNS])
    for name in COLUMNS:
        frame[name] = frame[name].astype(np.float64)
    frame["n_used"] = frame["n_used"].astype(np.int64)
    frame["n_skipped"] = frame["n_skipped"].astype(np.int64)
    return frame
