"""Predicted success of each pattern in each kind of task, with a credible interval.

The posterior (shrinkage formula, tested by dbt unit tests) is SQL in
int_pattern_predictions__posterior; this model only adds the Beta quantiles, which DuckDB
cannot compute (engram/posterior.py).

Incremental (README "Incremental builds"; issue 18): every row carries its pattern's
input digest (`input_digest`: a hash of the pattern's cells, their clusters' labels, the
global mean on its grid, the posterior query's text, the interval's mass and the code
that computes the interval, engram.numeric.posterior.interval_code();
macros/pattern_predictions_posterior_rows.sql). A refresh computes the digests (one pass
over the cells) and rewrites, whole, only the patterns whose digest differs from the
stored one, or that have rows on one side only (delete+insert on pattern_id); the
posterior and the quantiles are computed for those patterns alone. Computing the whole
posterior to compare its values, as this model did before, took 3.5-5.8 s at 10M
events (docs/benchmarks.md). The posterior shrinks toward the global mean on a grid of 0.01
(macros/shrinkage.sql, prior_mean), so after +1% events only the patterns with new
events change; when the mean crosses a step, every digest does, and the build rewrites
them all. The digest is written with the rows, in one delete+insert: a table cut short
by a killed build lacks the digests of what it lost, and the next refresh rewrites that.
Every row also carries the stamp of the write that wrote it (`written_at`,
engram.numeric.incremental.write_stamp): a refresh's data tests check the rows it wrote
alone (macros/changed_rows.sql, refreshed_rows()), and the serving copy syncs the
patterns whose stamps changed.
"""

import pyarrow as pa

from engram.numeric.incremental import (
    INPUT_DIGEST,
    WRITE_STAMP,
    begin_stamped_write,
    stamp_column,
)
from engram.numeric.posterior import beta_interval, interval_code

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
ORDER = "context_cluster_id, predicted_success desc, pattern_id"


def with_intervals(posterior: pa.Table, mass: float, stamp) -> pa.Table:
    """The posterior rows (with input_digest last) with ci_low / ci_high after
    predicted_success, and written_at (`stamp`) last."""
    low, high = beta_interval(
        posterior.column("posterior_alpha").to_numpy(),
        posterior.column("posterior_beta").to_numpy(),
        mass,
    )
    at = posterior.schema.get_field_index("predicted_success") + 1
    posterior = posterior.add_column(at, "ci_low", pa.array(low, type=pa.float64()))
    posterior = posterior.add_column(at + 1, "ci_high", pa.array(high, type=pa.float64()))
    return posterior.append_column(WRITE_STAMP, stamp_column(posterior.num_rows, stamp))


DIGESTS_MACRO = "int_pattern_predictions__input_digests"
ROWS_MACRO = "int_pattern_predictions__posterior_for"


def quoted(*parts: str) -> str:
    """`parts` as one qualified SQL name, each part quoted: the database is named after
    the warehouse's file, which may be an SQL keyword (a warehouse full.duckdb failed here
    with a syntax error when the name was not quoted)."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in parts)


def posterior_macros(session) -> tuple[str, str] | None:
    """The schema-qualified table macros the posterior view's post-hooks make
    (macros/pattern_predictions_posterior_rows.sql): (input digests, rows for some
    patterns); None where they are missing (the Spark path's DuckDB session)."""
    rows = session.execute(
        "select macros.database_name, macros.schema_name, macros.function_name "
        "from duckdb_functions() as macros "
        # the schema of the posterior view whose post-hooks made them
        "inner join duckdb_views() as views on views.database_name = macros.database_name "
        "and views.schema_name = macros.schema_name "
        "and views.view_name = 'int_pattern_predictions__posterior' "
        "where macros.database_name = current_database() "
        "and macros.function_type = 'table_macro' and macros.function_name in (?, ?)",
        [DIGESTS_MACRO, ROWS_MACRO],
    ).fetchall()
    found = {name: quoted(database, schema, name) for database, schema, name in rows}
    if DIGESTS_MACRO in found and ROWS_MACRO in found:
        return found[DIGESTS_MACRO], found[ROWS_MACRO]
    return None


def create_digests(session, digests_macro: str | None, mass: float) -> None:
    """Temp table engram_predictions_digests (pattern_id, input_digest): each pattern's
    input digest, combined with the interval's mass and the code that computes the
    interval (ci_low / ci_high depend on both too).
    Empty without the macros: every row is then written with a null digest, which the next
    refresh takes as changed."""
    if digests_macro is None:
        session.execute(
            "create or replace temp table engram_predictions_digests "
            "(pattern_id varchar, input_digest bigint)"
        )
        return
    # hash() is an unsigned 64-bit number, which Spark (and Arrow's conversion to it)
    # cannot hold: stored shifted into bigint's range, one to one
    session.execute(
        "create or replace temp table engram_predictions_digests as "
        f"select pattern_id, (hash(input_digest, {mass!r}::double, '{interval_code()}')"
        "::hugeint "
        "- 9223372036854775808)::bigint as input_digest "
        f"from {digests_macro}()"
    )


def with_digests(rows: str) -> str:
    """SQL: `rows` (posterior rows) with their pattern's input_digest as the last column."""
    return (
        f"select rows.*, digests.input_digest from ({rows}) as rows "
        "left join engram_predictions_digests as digests using (pattern_id) "
        f"order by {ORDER}"
    )


def model(dbt, session):
    dbt.config(
        materialized="incremental",
        incremental_strategy="delete+insert",
        unique_key="pattern_id",
        # written_at, new in older warehouses, replaced refreshed_after (a watermark);
        # input_digest is new too
        on_schema_change="sync_all_columns",
    )
    mass = float(dbt.config.get("prediction_interval"))
    posterior = dbt.ref("int_pattern_predictions__posterior").project(", ".join(COLUMNS))
    stamped, stamp = begin_stamped_write(dbt, session)
    macros = posterior_macros(session)
    if stamped and (
        macros is None
        or INPUT_DIGEST not in session.sql(f"select * from {dbt.this} limit 0").columns
    ):
        # a table from before its rows carried digests (or without the macros to compare
        # them): written whole, emptied first so patterns gone since do not stay
        session.execute(f"delete from {dbt.this}")
        stamped = False
    create_digests(session, macros[0] if macros else None, mass)
    try:
        if not stamped:
            # the first build, --full-refresh, or a table written whole (above): every
            # row, in the order readers scan it by
            posterior.create_view("engram_predictions_posterior", replace=True)
            try:
                rows = session.sql(
                    with_digests("select * from engram_predictions_posterior")
                ).to_arrow_table()
            finally:
                session.execute("drop view if exists engram_predictions_posterior")
            return with_intervals(rows, mass, stamp)
        assert macros is not None
        # the patterns whose digest differs from the one stored with their rows: new,
        # gone (no cells now) or with any input changed
        session.execute(
            f"""
            create or replace temp table engram_predictions_changed as
            select coalesce(now.pattern_id, stored.pattern_id) as pattern_id,
                now.pattern_id is null as gone
            from engram_predictions_digests as now
            full outer join (
                select pattern_id, min(input_digest) as low, max(input_digest) as high,
                    count(*) filter (where input_digest is null) as missing
                from {dbt.this} group by pattern_id
            ) as stored on stored.pattern_id = now.pattern_id
            where now.pattern_id is null or stored.pattern_id is null
                or stored.missing > 0 or now.input_digest is null
                or stored.low <> now.input_digest or stored.high <> now.input_digest
            """
        )
        # a pattern with stored rows and none now (merged away): its rows go here, since
        # delete+insert deletes only the patterns it inserts
        session.execute(
            f"delete from {dbt.this} where pattern_id in ("
            "select pattern_id from engram_predictions_changed where gone)"
        )
        scoped = (
            f"select {', '.join(COLUMNS)} from {macros[1]}(("
            "select list(pattern_id) from engram_predictions_changed where not gone))"
        )
        rows = session.sql(with_digests(scoped)).to_arrow_table()
    finally:
        session.execute("drop table if exists engram_predictions_changed")
        session.execute("drop table if exists engram_predictions_digests")
    return with_intervals(rows, mass, stamp)
