"""Predicted success of each pattern in each kind of task, with a credible interval.

The posterior (shrinkage formula, tested by dbt unit tests) is SQL in
int_pattern_predictions__posterior; this model only adds the Beta quantiles, which DuckDB
cannot compute (engram/posterior.py).

Incremental (README "Incremental builds"; issue 18): a build compares the posterior's
rows with the stored ones and rewrites, whole, only the patterns with a row that is new,
gone or different (delete+insert on pattern_id); the quantiles are computed for those
rows alone. The posterior shrinks toward the global mean on a grid of 0.01
(macros/shrinkage.sql, prior_mean), so after +1% events only the patterns with new
events differ; when the mean crosses a step, every pattern does, and the build rewrites
them all. The comparison is of values, not of what was loaded when: a rewrite is never
missed, and a table left short by a killed build is made whole by the next one. Every
row carries the stamp of the write that wrote it (`written_at`, engram.numeric.incremental.
write_stamp): a refresh's data tests check the rows it wrote alone (macros/changed_rows.sql,
refreshed_rows()), and the serving copy syncs the patterns whose stamps changed.
"""

import pyarrow as pa

from engram.numeric.incremental import WRITE_STAMP, begin_stamped_write, key_digests, stamp_column
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
KEYS = ("context_cluster_id", "context_cluster_label", "pattern_id")
ORDER = "context_cluster_id, predicted_success desc, pattern_id"


def with_intervals(posterior: pa.Table, mass: float, stamp) -> pa.Table:
    """The posterior rows with ci_low / ci_high after predicted_success, and written_at
    (`stamp`) last."""
    low, high = beta_interval(
        posterior.column("posterior_alpha").to_numpy(),
        posterior.column("posterior_beta").to_numpy(),
        mass,
    )
    at = posterior.schema.get_field_index("predicted_success") + 1
    posterior = posterior.add_column(at, "ci_low", pa.array(low, type=pa.float64()))
    posterior = posterior.add_column(at + 1, "ci_high", pa.array(high, type=pa.float64()))
    return posterior.append_column(WRITE_STAMP, stamp_column(posterior.num_rows, stamp))


def changed_patterns(session, this: str) -> None:
    """Fill temp table engram_predictions_changed (pattern_id, gone: it has no rows now)
    with the patterns whose rows in the posterior (temp table engram_predictions_now)
    differ from the stored table's: a row new, gone or with any value different.
    Compared per pattern by key_digests (numbers hashed as doubles, as the table stores
    them)."""
    numbers = [c for c in COLUMNS if c not in KEYS]
    row = (
        "hash(cast(context_cluster_id as bigint), context_cluster_label, "
        + ", ".join(f"cast({c} as double)" for c in numbers)
        + ")"
    )
    session.execute(
        f"""
        create or replace temp table engram_predictions_changed as
        select coalesce(now.pattern_id, stored.pattern_id) as pattern_id,
            now.pattern_id is null as gone
        from ({key_digests("engram_predictions_now", "pattern_id", row)}) as now
        full outer join ({key_digests(this, "pattern_id", row)}) as stored
            on stored.pattern_id = now.pattern_id
        where now.pattern_id is null or stored.pattern_id is null
            or now.n <> stored.n or now.d <> stored.d
        """
    )


def model(dbt, session):
    dbt.config(
        materialized="incremental",
        incremental_strategy="delete+insert",
        unique_key="pattern_id",
        # written_at, new in older warehouses, replaced refreshed_after (a watermark)
        on_schema_change="sync_all_columns",
    )
    mass = float(dbt.config.get("prediction_interval"))
    posterior = dbt.ref("int_pattern_predictions__posterior").project(", ".join(COLUMNS))
    stamped, stamp = begin_stamped_write(dbt, session)
    if not stamped:
        # the first build, --full-refresh, or a table from before its rows were stamped
        # (emptied by begin_stamped_write): every row, in the order readers scan it by
        return with_intervals(posterior.order(ORDER).to_arrow_table(), mass, stamp)
    # the view once: it aggregates every cell (2.4 s at 10M events), and the comparison,
    # the deletion and the rows written all read it
    posterior.create_view("engram_predictions_posterior", replace=True)
    session.execute(
        "create or replace temp table engram_predictions_now as "
        "select * from engram_predictions_posterior"
    )
    session.execute("drop view if exists engram_predictions_posterior")
    try:
        changed_patterns(session, str(dbt.this))
        # a pattern with stored rows and none now (merged away): its rows go here, since
        # delete+insert deletes only the patterns it inserts
        session.execute(
            f"delete from {dbt.this} where pattern_id in ("
            "select pattern_id from engram_predictions_changed where gone)"
        )
        rows = session.sql(
            "select now.* from engram_predictions_now as now "
            "semi join engram_predictions_changed using (pattern_id) "
            f"order by {ORDER}"
        ).to_arrow_table()
    finally:
        session.execute("drop table if exists engram_predictions_now")
        session.execute("drop table if exists engram_predictions_changed")
    return with_intervals(rows, mass, stamp)
