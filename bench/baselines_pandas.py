"""The four marts written plainly in pandas, as a data scientist's script would: group-bys
over the events, a self-merge for file pairs, a reindex for missing weeks.

Definitions mirror the dbt models exactly (models/marts/trends, files, predictions and the
macros in macros/trend_stats.sql), so the benchmark can check they give the same answers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from bench.inputs import BaselineInputs
from engram.numeric.posterior import beta_interval


def _week(ts: pd.Series) -> pd.Series:
    """Monday of the calendar week (as DuckDB's date_trunc('week'))."""
    day = ts.dt.normalize()
    return day - pd.to_timedelta(day.dt.weekday, unit="D")


EXACT_FIT_TOLERANCE = 1e-9  # macros/trend_stats.sql: trend_exact_fit_tolerance


def _slope_and_t(g: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Least-squares slope of y on x and its t statistic from per-group sums
    n, sx, sxx, sy, syy, sxy (macros/trend_stats.sql: trend_slope_and_t)."""
    n, sx, sxx = g["n"].astype(float), g["sx"].astype(float), g["sxx"].astype(float)
    sy, syy, sxy = g["sy"], g["syy"], g["sxy"]
    denom = n * sxx - sx * sx
    slope = ((n * sxy - sx * sy) / denom).where(denom > 0)
    syy_c = syy - sy * sy / n
    ss_res = syy_c - slope * (sxy - sx * sy / n)
    flat = syy_c <= EXACT_FIT_TOLERANCE * syy  # no variance in y: slope 0, t null
    fitted = (ss_res > EXACT_FIT_TOLERANCE * syy_c) & ~flat
    se = np.sqrt(ss_res.where(fitted) / (n - 2) / (denom / n))
    t = (slope / se).where((n > 2) & (denom > 0))
    slope = slope.mask(flat & (denom > 0), 0.0)
    return slope, t


def _direction(n: pd.Series, slope: pd.Series, t: pd.Series, v: dict[str, Any]) -> pd.Series:
    """macros/trend_stats.sql: trend_direction."""
    strong = t.isna() | (t.abs() >= v["trend_min_abs_t"])
    out = np.where(
        (n < max(v["trend_min_events"], 3)) | slope.isna(),
        "insufficient_data",
        np.where(
            strong & (slope > 0), "improving", np.where(strong & (slope < 0), "declining", "stable")
        ),
    )
    return pd.Series(out, index=n.index)


def _trend_moments(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per key: n and the sums for the slope, x = whole weeks since the key's first week."""
    first = frame.groupby(keys)["week"].transform("min")
    frame = frame.assign(
        x=((frame["week"] - first).dt.days // 7).astype("int64"),
        y=frame["outcome_quality"],
    )
    frame = frame.assign(xx=frame["x"] * frame["x"], yy=frame["y"] ** 2, xy=frame["x"] * frame["y"])
    return frame.groupby(keys).agg(
        n=("y", "size"),
        sx=("x", "sum"),
        sxx=("xx", "sum"),
        sy=("y", "sum"),
        syy=("yy", "sum"),
        sxy=("xy", "sum"),
        first_week=("week", "min"),
        last_week=("week", "max"),
        first_seen_at=("occurred_at", "min"),
        last_seen_at=("occurred_at", "max"),
    )


def pattern_trends(events: pd.DataFrame) -> pd.DataFrame:
    """Weekly usage and quality per pattern, gap-filled, with a 4-week moving average."""
    weekly = (
        events.groupby(["pattern_id", "week"])
        .agg(usage_count=("outcome_quality", "size"), sum_quality=("outcome_quality", "sum"))
        .reset_index()
    )
    spans = weekly.groupby("pattern_id")["week"].agg(["min", "max"])
    n_weeks = ((spans["max"] - spans["min"]).dt.days // 7 + 1).to_numpy()
    pattern_ids = np.repeat(spans.index.to_numpy(), n_weeks)
    offsets = np.arange(n_weeks.sum()) - np.repeat(np.cumsum(n_weeks) - n_weeks, n_weeks)
    calendar = pd.DataFrame(
        {
            "pattern_id": pattern_ids,
            "week": np.repeat(spans["min"].to_numpy(), n_weeks)
            + pd.to_timedelta(offsets * 7, unit="D"),
        }
    )
    filled = calendar.merge(weekly, on=["pattern_id", "week"], how="left")
    filled["usage_count"] = filled["usage_count"].fillna(0).astype("int64")
    filled["sum_quality"] = filled["sum_quality"].fillna(0.0)
    filled = filled.sort_values(["pattern_id", "week"], ignore_index=True)
    grouped = filled.groupby("pattern_id")
    moving_sum = grouped["sum_quality"].rolling(4, min_periods=1).sum().reset_index(drop=True)
    moving_n = grouped["usage_count"].rolling(4, min_periods=1).sum().reset_index(drop=True)
    filled["avg_quality"] = (filled["sum_quality"] / filled["usage_count"]).where(
        filled["usage_count"] > 0
    )
    filled["moving_avg_quality"] = (moving_sum / moving_n).where(moving_n > 0)
    return filled[["pattern_id", "week", "usage_count", "avg_quality", "moving_avg_quality"]]


def pattern_trend_summary(events: pd.DataFrame, v: dict[str, Any]) -> pd.DataFrame:
    m = _trend_moments(events, ["pattern_id"])
    slope, t = _slope_and_t(m)
    out = pd.DataFrame(
        {
            "n_events": m["n"],
            "first_week": m["first_week"],
            "last_week": m["last_week"],
            "avg_quality": m["sy"] / m["n"],
            "quality_slope_per_week": slope,
            "slope_t_stat": t,
            "direction": _direction(m["n"], slope, t, v),
        }
    )
    return out.reset_index()


def file_cooccurrence(events: pd.DataFrame, v: dict[str, Any]) -> pd.DataFrame:
    """File pairs of one project seen together in >= min_support of its events, with
    quality, lift, point-biserial correlation against all the project's events, and the
    pair's weekly quality slope."""
    return pd.concat(
        [
            _project_file_pairs(group, v).assign(project_id=project)
            for project, group in events.groupby("project_id", sort=True)
        ],
        ignore_index=True,
    )


def _project_file_pairs(events: pd.DataFrame, v: dict[str, Any]) -> pd.DataFrame:
    n_all = len(events)
    sum_all = events["outcome_quality"].sum()
    mean_all = sum_all / n_all
    sd_all = np.sqrt(
        max((events["outcome_quality"] ** 2).sum() - sum_all * sum_all / n_all, 0) / n_all
    )

    files = events[["event_id", "files"]].explode("files").dropna()
    files = files.drop_duplicates().rename(columns={"files": "file_path"})
    n_files = files.groupby("event_id").size()
    keep = n_files[(n_files >= 2) & (n_files <= v["cooccurrence_max_files"])].index
    files = files[files["event_id"].isin(keep)]
    pairs = files.merge(files, on="event_id", suffixes=("_a", "_b"))
    pairs = pairs[pairs["file_path_a"] < pairs["file_path_b"]]
    pairs = pairs.rename(columns={"file_path_a": "file_a", "file_path_b": "file_b"})
    detail = events[["event_id", "occurred_at", "week", "outcome_quality"]]
    pairs = pairs.merge(detail, on="event_id")
    support = pairs.groupby(["file_a", "file_b"])["event_id"].transform("size")
    pairs = pairs[support >= v["cooccurrence_min_support"]]

    m = _trend_moments(pairs, ["file_a", "file_b"])
    slope, t = _slope_and_t(m)
    n, sy = m["n"].astype(float), m["sy"]
    avg = sy / n
    rest_mean = (sum_all - sy) / (n_all - n)
    corr = ((avg - rest_mean) / sd_all * np.sqrt(n * (n_all - n)) / n_all).where(
        (sd_all > 0) & (n < n_all)
    )
    out = pd.DataFrame(
        {
            "co_occurrences": m["n"],
            "avg_quality": avg,
            "quality_lift": avg - mean_all,
            "success_correlation": corr,
            "quality_slope_per_week": slope,
            "slope_t_stat": t,
            "direction": _direction(m["n"], slope, t, v),
            "first_seen_at": m["first_seen_at"],
            "last_seen_at": m["last_seen_at"],
        }
    )
    return out.reset_index()


def pattern_predictions(
    events: pd.DataFrame, inputs: BaselineInputs, v: dict[str, Any]
) -> pd.DataFrame:
    """Per (context cluster, pattern): success shrunk toward the pattern's mean, itself shrunk
    toward the global mean (Beta-binomial, var('prediction_prior_strength') pseudo-events),
    with the equal-tailed Beta credible interval."""
    k = float(v["prediction_prior_strength"])
    known = events[events["pattern_id"].isin(inputs.pattern_ids["pattern_id"])]
    located = known.merge(
        inputs.contexts[["context_hash", "context_cluster_id"]], on="context_hash", how="left"
    )
    located["context_cluster_id"] = located["context_cluster_id"].fillna(-1).astype("int64")
    by_context = (
        located.groupby(["context_cluster_id", "pattern_id"])["outcome_quality"]
        .agg(n_events="size", sum_quality="sum")
        .reset_index()
    )
    by_pattern = located.groupby("pattern_id")["outcome_quality"].agg(
        pattern_n_events="size", pattern_sum="sum"
    )
    steps = int(v["prior_mean_steps"])  # the global mean on the prior's grid
    global_mean = np.floor(located["outcome_quality"].sum() / len(located) * steps + 0.5) / steps
    by_pattern["pattern_mean_quality"] = by_pattern["pattern_sum"] / by_pattern["pattern_n_events"]
    by_pattern["pattern_mean_shrunk"] = (by_pattern["pattern_sum"] + k * global_mean) / (
        by_pattern["pattern_n_events"] + k
    )
    out = by_context.merge(by_pattern.reset_index(), on="pattern_id")
    prior = out["pattern_mean_shrunk"]
    out["mean_quality"] = out["sum_quality"] / out["n_events"]
    out["predicted_success"] = (out["sum_quality"] + k * prior) / (out["n_events"] + k)
    alpha = out["sum_quality"] + k * prior
    beta = (out["n_events"] - out["sum_quality"]) + k * (1 - prior)
    out["ci_low"], out["ci_high"] = beta_interval(
        alpha.to_numpy(), beta.to_numpy(), float(v["prediction_interval"])
    )
    labels = inputs.contexts[["context_cluster_id", "context_cluster_label"]].drop_duplicates()
    out = out.merge(labels, on="context_cluster_id", how="left")
    out["context_cluster_label"] = out["context_cluster_label"].fillna("(no task text)")
    return out[
        [
            "context_cluster_id",
            "context_cluster_label",
            "pattern_id",
            "n_events",
            "mean_quality",
            "pattern_mean_quality",
            "predicted_success",
            "ci_low",
            "ci_high",
            "pattern_n_events",
            "pattern_mean_shrunk",
        ]
    ]


def run_timed(
    inputs: BaselineInputs, v: dict[str, Any]
) -> tuple[dict[str, pd.DataFrame], dict[str, float]]:
    """Every mart from the raw events, with seconds per mart (the shared week column is
    counted in the first)."""
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    events = inputs.events.assign(week=_week(inputs.events["occurred_at"]))
    frames: dict[str, pd.DataFrame] = {}
    steps: list[tuple[str, Callable[[], pd.DataFrame]]] = [
        ("pattern_trends", lambda: pattern_trends(events)),
        ("pattern_trend_summary", lambda: pattern_trend_summary(events, v)),
        ("file_cooccurrence", lambda: file_cooccurrence(events, v)),
    ]
    if len(inputs.contexts):
        steps.append(("pattern_predictions", lambda: pattern_predictions(events, inputs, v)))
    for name, step in steps:
        frames[name] = step()
        seconds[name] = time.perf_counter() - started
        started = time.perf_counter()
    return frames, seconds
