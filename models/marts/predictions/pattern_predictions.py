"""Predicted success of each pattern in each kind of task, with a credible interval.

The posterior (shrinkage formula, tested by dbt unit tests) is SQL in
int_pattern_predictions__posterior; this model only adds the Beta quantiles, which DuckDB
cannot compute (engram/posterior.py).
"""

import pyarrow as pa

from engram.numeric.posterior import beta_interval

COLUMNS = (
    "context_cluster_id",
    "context_cluster_label",
    "pattern_id",
    "n_events",
    "mean_quality",
    "pattern_mean_quality",
    "predicted_success",
    "pattern_n_events",
    "pattern_mean_shrunk",
    "prior_strength",
    "posterior_alpha",
    "posterior_beta",
)


def model(dbt, session):
    dbt.config(materialized="table")
    mass = float(dbt.config.get("prediction_interval"))
    posterior = (
        dbt.ref("int_pattern_predictions__posterior")
        .project(", ".join(COLUMNS))
        .order("context_cluster_id, predicted_success desc, pattern_id")
        .to_arrow_table()
    )
    low, high = beta_interval(
        posterior.column("posterior_alpha").to_numpy(),
        posterior.column("posterior_beta").to_numpy(),
        mass,
    )
    at = posterior.schema.get_field_index("predicted_success") + 1
    posterior = posterior.add_column(at, "ci_low", pa.array(low, type=pa.float64()))
    return posterior.add_column(at + 1, "ci_high", pa.array(high, type=pa.float64()))
