"""The four marts written in Polars, as a Polars user would: the raw rows read once from the
warehouse into memory (Arrow, no copy through pandas), then one lazy query plan per mart,
collected with the streaming engine so that the large intermediates (the exploded file
lists, the file-pair self-join) are processed in batches instead of all at once.

Definitions mirror the dbt models exactly (models/marts/trends, files, predictions and the
macros in macros/trend_stats.sql), as bench/baselines_pandas.py does, so the benchmark can
check they give the same answers. The Beta quantiles of pattern_predictions are the same
Python function the dbt model calls (engram.numeric.posterior): no engine has them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import polars as pl

from engram.numeric.posterior import beta_interval

EXACT_FIT_TOLERANCE = 1e-9  # macros/trend_stats.sql: trend_exact_fit_tolerance
ENGINE = "streaming"  # Polars' batched engine: bounded memory on the large joins


@dataclass
class PolarsInputs:
    """The same rows bench.inputs.load_inputs gives pandas, as Polars frames."""

    # event_id, pattern_id, occurred_at, outcome_quality, files, context_hash, project_id
    events: pl.DataFrame
    contexts: pl.DataFrame  # context_hash, context_cluster_id, context_cluster_label
    pattern_ids: pl.DataFrame  # pattern_id of every loaded pattern (predictions skip others)


def _frame(con: duckdb.DuckDBPyConnection, sql: str) -> pl.DataFrame:
    frame = pl.from_arrow(con.sql(sql).to_arrow_table())
    assert isinstance(frame, pl.DataFrame)  # a table gives a frame (a single array a Series)
    return frame


def load_inputs(db_path: Path) -> PolarsInputs:
    """Read the raw rows the dbt marts start from (raw.usage_events, raw.patterns and the
    context clustering the warehouse computed) straight into Polars via Arrow."""
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        events = _frame(
            con,
            """
            select event_id, pattern_id, occurred_at, outcome_quality,
                   files_involved as files, context_hash, project_id
            from raw.usage_events
            """,
        )
        has_contexts = con.execute(
            "select count(*) from information_schema.tables "
            "where table_schema = 'intermediate' and table_name = 'int_contexts__clustered'"
        ).fetchall()[0][0]
        if has_contexts:
            contexts = _frame(
                con,
                "select context_hash, context_cluster_id, context_cluster_label "
                "from intermediate.int_contexts__clustered",
            )
        else:
            contexts = pl.DataFrame(
                schema={
                    "context_hash": pl.String,
                    "context_cluster_id": pl.Int64,
                    "context_cluster_label": pl.String,
                }
            )
        pattern_ids = _frame(con, "select pattern_id from raw.patterns")
    finally:
        con.close()
    return PolarsInputs(events, contexts, pattern_ids)


def _trend_moments(frame: pl.LazyFrame, keys: list[str]) -> pl.LazyFrame:
    """Per key: n and the sums for the slope, x = whole weeks since the key's first week."""
    x = (pl.col("week") - pl.col("week").min().over(keys)).dt.total_days() // 7
    y = pl.col("outcome_quality")
    return (
        frame.with_columns(x=x.cast(pl.Int64), y=y)
        .group_by(keys)
        .agg(
            n=pl.len().cast(pl.Int64),
            sx=pl.col("x").sum(),
            sxx=(pl.col("x") * pl.col("x")).sum(),
            sy=pl.col("y").sum(),
            syy=(pl.col("y") * pl.col("y")).sum(),
            sxy=(pl.col("x") * pl.col("y")).sum(),
            first_week=pl.col("week").min(),
            last_week=pl.col("week").max(),
            first_seen_at=pl.col("occurred_at").min(),
            last_seen_at=pl.col("occurred_at").max(),
        )
    )


def _with_slope_and_t(frame: pl.LazyFrame) -> pl.LazyFrame:
    """Least-squares slope of y on x and its t statistic from the per-group sums
    (macros/trend_stats.sql: trend_slope_and_t); an exact fit gives a null t."""
    n, sx, sxx = (pl.col(c).cast(pl.Float64) for c in ("n", "sx", "sxx"))
    sy, syy, sxy = pl.col("sy"), pl.col("syy"), pl.col("sxy")
    denom = n * sxx - sx * sx
    frame = frame.with_columns(
        slope=pl.when(denom > 0).then((n * sxy - sx * sy) / denom),
        syy_c=syy - sy * sy / n,
    )
    flat = pl.col("syy_c") <= EXACT_FIT_TOLERANCE * syy  # no variance in y: slope 0, t null
    ss_res = pl.col("syy_c") - pl.col("slope") * (sxy - sx * sy / n)
    se = (ss_res / (n - 2) / (denom / n)).sqrt()
    fits = (n > 2) & (denom > 0) & ~flat & (ss_res > EXACT_FIT_TOLERANCE * pl.col("syy_c"))
    return (
        frame.with_columns(t=pl.when(fits).then(pl.col("slope") / se))
        .with_columns(slope=pl.when(flat & (denom > 0)).then(0.0).otherwise(pl.col("slope")))
        .drop("syy_c")
    )


def _direction(v: dict[str, Any]) -> pl.Expr:
    """macros/trend_stats.sql: trend_direction (on columns n, slope, t)."""
    slope, t = pl.col("slope"), pl.col("t")
    strong = t.is_null() | (t.abs() >= v["trend_min_abs_t"])
    return (
        pl.when((pl.col("n") < max(v["trend_min_events"], 3)) | slope.is_null())
        .then(pl.lit("insufficient_data"))
        .when(strong & (slope > 0))
        .then(pl.lit("improving"))
        .when(strong & (slope < 0))
        .then(pl.lit("declining"))
        .otherwise(pl.lit("stable"))
    )


def pattern_trends(events: pl.LazyFrame) -> pl.LazyFrame:
    """Weekly usage and quality per pattern, gap-filled, with a 4-week moving average."""
    weekly = events.group_by("pattern_id", "week").agg(
        usage_count=pl.len().cast(pl.Int64), sum_quality=pl.col("outcome_quality").sum()
    )
    calendar = (
        weekly.group_by("pattern_id")
        .agg(first=pl.col("week").min(), last=pl.col("week").max())
        .select("pattern_id", week=pl.date_ranges("first", "last", interval="1w"))
        .explode("week")
    )
    filled = (
        calendar.join(weekly, on=["pattern_id", "week"], how="left")
        .with_columns(pl.col("usage_count").fill_null(0), pl.col("sum_quality").fill_null(0.0))
        .sort("pattern_id", "week")
    )
    moving_sum = pl.col("sum_quality").rolling_sum(4, min_samples=1).over("pattern_id")
    moving_n = pl.col("usage_count").rolling_sum(4, min_samples=1).over("pattern_id")
    return filled.select(
        "pattern_id",
        "week",
        "usage_count",
        avg_quality=pl.when(pl.col("usage_count") > 0).then(
            pl.col("sum_quality") / pl.col("usage_count")
        ),
        moving_avg_quality=pl.when(moving_n > 0).then(moving_sum / moving_n),
    )


def pattern_trend_summary(events: pl.LazyFrame, v: dict[str, Any]) -> pl.LazyFrame:
    stats = _with_slope_and_t(_trend_moments(events, ["pattern_id"]))
    return stats.select(
        "pattern_id",
        n_events=pl.col("n"),
        first_week=pl.col("first_week"),
        last_week=pl.col("last_week"),
        avg_quality=pl.col("sy") / pl.col("n"),
        quality_slope_per_week=pl.col("slope"),
        slope_t_stat=pl.col("t"),
        direction=_direction(v),
    )


def file_cooccurrence(events: pl.LazyFrame, v: dict[str, Any]) -> pl.LazyFrame:
    """File pairs of one project seen together in >= min_support of its events, with
    quality, lift, point-biserial correlation against all the project's events, and the
    pair's weekly quality slope."""
    q = pl.col("outcome_quality")
    population = (
        events.group_by("project_id")
        .agg(n_all=pl.len().cast(pl.Float64), sum_all=q.sum(), sum_sq_all=(q * q).sum())
        .select(
            "project_id",
            "n_all",
            "sum_all",
            mean_all=pl.col("sum_all") / pl.col("n_all"),
            sd_all=(
                pl.max_horizontal(
                    pl.col("sum_sq_all") - pl.col("sum_all") * pl.col("sum_all") / pl.col("n_all"),
                    pl.lit(0.0),
                )
                / pl.col("n_all")
            ).sqrt(),
        )
    )
    files = (
        events.select("event_id", file_path=pl.col("files"))
        .explode("file_path")
        .drop_nulls()
        .unique()
    )
    n_files = pl.len().over("event_id")
    files = files.filter((n_files >= 2) & (n_files <= v["cooccurrence_max_files"]))
    keys = ["project_id", "file_a", "file_b"]
    detail = events.select("event_id", "project_id", "occurred_at", "week", "outcome_quality")
    pairs = (
        files.join(files, on="event_id", suffix="_b")
        .filter(pl.col("file_path") < pl.col("file_path_b"))
        .select("event_id", file_a=pl.col("file_path"), file_b=pl.col("file_path_b"))
        .join(detail, on="event_id")
        .filter(pl.len().over(keys) >= v["cooccurrence_min_support"])
    )
    stats = _with_slope_and_t(_trend_moments(pairs, keys)).join(population, on="project_id")
    n, sy, n_all = pl.col("n").cast(pl.Float64), pl.col("sy"), pl.col("n_all")
    avg = sy / n
    rest_mean = (pl.col("sum_all") - sy) / (n_all - n)
    corr = (avg - rest_mean) / pl.col("sd_all") * (n * (n_all - n)).sqrt() / n_all
    return stats.select(
        *keys,
        co_occurrences=pl.col("n"),
        avg_quality=avg,
        quality_lift=avg - pl.col("mean_all"),
        success_correlation=pl.when((pl.col("sd_all") > 0) & (n < n_all)).then(corr),
        quality_slope_per_week=pl.col("slope"),
        slope_t_stat=pl.col("t"),
        direction=_direction(v),
        first_seen_at=pl.col("first_seen_at"),
        last_seen_at=pl.col("last_seen_at"),
    )


def pattern_predictions_posterior(
    events: pl.LazyFrame, inputs: PolarsInputs, v: dict[str, Any]
) -> pl.LazyFrame:
    """Per (context cluster, pattern): success shrunk toward the pattern's mean, itself shrunk
    toward the global mean (Beta-binomial, var('prediction_prior_strength') pseudo-events),
    with the Beta posterior's parameters; the interval is added after collecting."""
    k = float(v["prediction_prior_strength"])
    q = pl.col("outcome_quality")
    located = (
        events.join(inputs.pattern_ids.lazy().unique(), on="pattern_id", how="semi")
        .join(
            inputs.contexts.lazy().select("context_hash", "context_cluster_id"),
            on="context_hash",
            how="left",
        )
        .with_columns(pl.col("context_cluster_id").fill_null(-1).cast(pl.Int64))
    )
    by_context = located.group_by("context_cluster_id", "pattern_id").agg(
        n_events=pl.len().cast(pl.Int64), sum_quality=q.sum()
    )
    steps = int(v["prior_mean_steps"])  # the global mean on the prior's grid
    global_mean = located.select(g=((q.sum() / pl.len()) * steps + 0.5).floor() / steps)
    by_pattern = (
        located.group_by("pattern_id")
        .agg(pattern_n_events=pl.len().cast(pl.Int64), pattern_sum=q.sum())
        .join(global_mean, how="cross")
        .select(
            "pattern_id",
            "pattern_n_events",
            pattern_mean_quality=pl.col("pattern_sum") / pl.col("pattern_n_events"),
            pattern_mean_shrunk=(pl.col("pattern_sum") + k * pl.col("g"))
            / (pl.col("pattern_n_events") + k),
        )
    )
    labels = inputs.contexts.lazy().select("context_cluster_id", "context_cluster_label").unique()
    prior, s, n = pl.col("pattern_mean_shrunk"), pl.col("sum_quality"), pl.col("n_events")
    return (
        by_context.join(by_pattern, on="pattern_id")
        .join(labels, on="context_cluster_id", how="left")
        .select(
            "context_cluster_id",
            context_cluster_label=pl.col("context_cluster_label").fill_null("(no task text)"),
            pattern_id=pl.col("pattern_id"),
            n_events=n,
            mean_quality=s / n,
            pattern_mean_quality=pl.col("pattern_mean_quality"),
            predicted_success=(s + k * prior) / (n + k),
            pattern_n_events=pl.col("pattern_n_events"),
            pattern_mean_shrunk=prior,
            posterior_alpha=s + k * prior,
            posterior_beta=(n - s) + k * (1 - prior),
        )
    )


def pattern_predictions(
    events: pl.LazyFrame, inputs: PolarsInputs, v: dict[str, Any]
) -> pl.DataFrame:
    posterior = pattern_predictions_posterior(events, inputs, v).collect(engine=ENGINE)
    low, high = beta_interval(
        posterior["posterior_alpha"].to_numpy(),
        posterior["posterior_beta"].to_numpy(),
        float(v["prediction_interval"]),
    )
    return posterior.with_columns(ci_low=pl.Series(low), ci_high=pl.Series(high)).drop(
        "posterior_alpha", "posterior_beta"
    )


def run_timed(
    inputs: PolarsInputs, v: dict[str, Any]
) -> tuple[dict[str, pl.DataFrame], dict[str, float]]:
    """Every mart from the raw events, with seconds per mart (the shared week column is
    counted in the first, as in the pandas baseline)."""
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    # Monday of the calendar week, as DuckDB's date_trunc('week') cast to date
    events = inputs.events.with_columns(week=pl.col("occurred_at").dt.truncate("1w").dt.date())
    lazy = events.lazy()
    steps: list[tuple[str, Callable[[], pl.DataFrame]]] = [
        ("pattern_trends", lambda: pattern_trends(lazy).collect(engine=ENGINE)),
        (
            "pattern_trend_summary",
            lambda: pattern_trend_summary(lazy, v).collect(engine=ENGINE),
        ),
        ("file_cooccurrence", lambda: file_cooccurrence(lazy, v).collect(engine=ENGINE)),
    ]
    if inputs.contexts.height:
        steps.append(("pattern_predictions", lambda: pattern_predictions(lazy, inputs, v)))
    frames: dict[str, pl.DataFrame] = {}
    for name, step in steps:
        frames[name] = step()
        seconds[name] = time.perf_counter() - started
        started = time.perf_counter()
    return frames, seconds


def to_pandas(frames: dict[str, pl.DataFrame]) -> dict[str, pd.DataFrame]:
    """The marts as pandas frames, for bench.compare (the answer check, not timed)."""
    return {name: frame.to_pandas() for name, frame in frames.items()}
