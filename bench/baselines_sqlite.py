"""The four marts in plain SQL on SQLite (stdlib sqlite3), the other tool people reach for.

SQLite has no list type, so loading puts the events in one table and their files in another
(one row per listed file), with an index on event_id, as a SQLite user would; that load is
timed apart from the mart queries. Definitions mirror the dbt models (models/marts/...,
macros/trend_stats.sql); weeks are Mondays via date(ts, 'weekday 0', '-6 days').
"""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.inputs import BaselineInputs
from engram.numeric.posterior import beta_interval

WEEK = "date(occurred_at, 'weekday 0', '-6 days')"

# slope / t of y on x from sums n, sx, sxx, sy, syy, sxy (macros/trend_stats.sql)
_DENOM = "(n * sxx - sx * sx)"
_SYY_C = "(syy - sy * sy / n)"
_FLAT = f"({_SYY_C} <= 1e-9 * syy)"  # no variance in y: slope 0, t null
_SLOPE = f"""case when {_DENOM} > 0 and {_FLAT} then 0.0
    when {_DENOM} > 0 then (n * sxy - sx * sy) / cast({_DENOM} as real) end"""
_SS_RES = f"({_SYY_C} - ({_SLOPE}) * (sxy - sx * sy / n))"
# an exact fit (residuals within rounding of 0) gives a null t: macros/trend_stats.sql
_T = f"""case when n > 2 and {_DENOM} > 0 and not {_FLAT} and {_SS_RES} > 1e-9 * {_SYY_C} then
    ((n * sxy - sx * sy) / cast({_DENOM} as real))
        / sqrt({_SS_RES} / (n - 2) / (cast({_DENOM} as real) / n))
    end"""
_DIRECTION = """case
    when n < max(:trend_min_events, 3) or slope is null then 'insufficient_data'
    when (t is null or abs(t) >= :trend_min_abs_t) and slope > 0 then 'improving'
    when (t is null or abs(t) >= :trend_min_abs_t) and slope < 0 then 'declining'
    else 'stable' end"""

PATTERN_TRENDS = """
with recursive
weekly as (
    select pattern_id, week, count(*) as n, sum(outcome_quality) as sq
    from ev group by pattern_id, week
),
spans as (
    select pattern_id, min(week) as first_week, max(week) as last_week
    from weekly group by pattern_id
),
calendar(pattern_id, week, last_week) as (
    select pattern_id, first_week, last_week from spans
    union all
    select pattern_id, date(week, '+7 days'), last_week from calendar where week < last_week
),
filled as (
    select c.pattern_id, c.week, coalesce(w.n, 0) as usage_count, coalesce(w.sq, 0.0) as sq
    from calendar as c
    left join weekly as w on w.pattern_id = c.pattern_id and w.week = c.week
)
select
    pattern_id, week, usage_count,
    case when usage_count > 0 then sq / usage_count end as avg_quality,
    sum(sq) over w / nullif(sum(usage_count) over w, 0) as moving_avg_quality
from filled
window w as (partition by pattern_id order by week rows between 3 preceding and current row)
"""

PATTERN_TREND_SUMMARY = f"""
with
spans as (select pattern_id, min(week) as first_week, max(week) as last_week
          from ev group by pattern_id),
indexed as (
    select ev.pattern_id, spans.first_week, spans.last_week, ev.outcome_quality as y,
           cast(round(julianday(ev.week) - julianday(spans.first_week)) as integer) / 7 as x
    from ev join spans on spans.pattern_id = ev.pattern_id
),
moments as (
    select pattern_id, first_week, last_week, count(*) as n, sum(x) as sx, sum(x * x) as sxx,
           sum(y) as sy, sum(y * y) as syy, sum(x * y) as sxy
    from indexed group by pattern_id
),
stats as (select *, {_SLOPE} as slope, {_T} as t from moments)
select pattern_id, n as n_events, first_week, last_week, sy / n as avg_quality,
       slope as quality_slope_per_week, t as slope_t_stat, {_DIRECTION} as direction
from stats
"""

FILE_COOCCURRENCE = f"""
with
files as (select distinct event_id, file_path from event_files),
counts as (select event_id, count(*) as n_files from files group by event_id),
kept as (
    select files.event_id, files.file_path from files
    join counts on counts.event_id = files.event_id
    where counts.n_files between 2 and :cooccurrence_max_files
),
pairs as (
    select a.event_id, a.file_path as file_a, b.file_path as file_b
    from kept as a join kept as b on a.event_id = b.event_id and a.file_path < b.file_path
),
pair_events as (
    select ev.project_id, pairs.file_a, pairs.file_b, ev.week, ev.occurred_at,
           ev.outcome_quality as y
    from pairs join ev on ev.event_id = pairs.event_id
),
spans as (
    select project_id, file_a, file_b, min(week) as first_week from pair_events
    group by project_id, file_a, file_b having count(*) >= :cooccurrence_min_support
),
moments as (
    select p.project_id, p.file_a, p.file_b, count(*) as n,
           sum(x) as sx, sum(x * x) as sxx, sum(y) as sy, sum(y * y) as syy, sum(x * y) as sxy,
           min(occurred_at) as first_seen_at, max(occurred_at) as last_seen_at
    from (
        select pe.*,
               cast(round(julianday(pe.week) - julianday(s.first_week)) as integer) / 7 as x
        from pair_events as pe
        join spans as s
            on s.project_id = pe.project_id and s.file_a = pe.file_a and s.file_b = pe.file_b
    ) as p
    group by p.project_id, p.file_a, p.file_b
),
population as (
    select project_id, count(*) as n_all, sum(outcome_quality) as sum_all,
           sum(outcome_quality * outcome_quality) as sum_sq_all
    from ev group by project_id
),
population_stats as (
    select project_id as population_project, n_all, sum_all, sum_all / n_all as mean_all,
           sqrt(max(sum_sq_all - sum_all * sum_all / n_all, 0) / n_all) as sd_all
    from population
),
stats as (
    select m.*, {_SLOPE} as slope, {_T} as t, p.*,
           m.sy / m.n as avg_quality
    from moments as m join population_stats as p on p.population_project = m.project_id
)
select project_id, file_a, file_b, n as co_occurrences, avg_quality,
    avg_quality - mean_all as quality_lift,
    case when sd_all > 0 and n < n_all then
        (avg_quality - (sum_all - sy) / (n_all - n)) / sd_all
            * sqrt(cast(n as real) * (n_all - n)) / n_all
    end as success_correlation,
    slope as quality_slope_per_week, t as slope_t_stat, {_DIRECTION} as direction,
    first_seen_at, last_seen_at
from stats
"""

PATTERN_PREDICTIONS = """
with
located as (
    select coalesce(c.context_cluster_id, -1) as context_cluster_id, ev.pattern_id,
           ev.outcome_quality as q
    from ev
    join (select distinct pattern_id from patterns) as p on p.pattern_id = ev.pattern_id
    left join context_clusters as c on c.context_hash = ev.context_hash
),
by_context as (
    select context_cluster_id, pattern_id, count(*) as n, sum(q) as s
    from located group by context_cluster_id, pattern_id
),
by_pattern as (select pattern_id, count(*) as n, sum(q) as s from located group by pattern_id),
-- the global mean on the prior's grid: floor(g * steps + 0.5) / steps (g >= 0, so the
-- cast's truncation is the floor; SQLite may lack floor())
overall as (
    select cast(sum(q) / count(*) * :prior_mean_steps + 0.5 as integer)
           / (:prior_mean_steps * 1.0) as g
    from located
),
pattern_means as (
    select pattern_id, n as pattern_n_events, s / n as pattern_mean_quality,
           (s + :prediction_prior_strength * g) / (n + :prediction_prior_strength)
               as pattern_mean_shrunk
    from by_pattern cross join overall
),
labels as (select distinct context_cluster_id, context_cluster_label from context_clusters)
select
    b.context_cluster_id,
    coalesce(l.context_cluster_label, '(no task text)') as context_cluster_label,
    b.pattern_id,
    b.n as n_events,
    b.s / b.n as mean_quality,
    m.pattern_mean_quality,
    (b.s + :prediction_prior_strength * m.pattern_mean_shrunk)
        / (b.n + :prediction_prior_strength) as predicted_success,
    cast(null as real) as ci_low,
    cast(null as real) as ci_high,
    m.pattern_n_events,
    m.pattern_mean_shrunk,
    b.s + :prediction_prior_strength * m.pattern_mean_shrunk as posterior_alpha,
    (b.n - b.s) + :prediction_prior_strength * (1 - m.pattern_mean_shrunk) as posterior_beta
from by_context as b
join pattern_means as m on m.pattern_id = b.pattern_id
left join labels as l on l.context_cluster_id = b.context_cluster_id
"""

QUERIES: dict[str, str] = {
    "pattern_trends": PATTERN_TRENDS,
    "pattern_trend_summary": PATTERN_TREND_SUMMARY,
    "file_cooccurrence": FILE_COOCCURRENCE,
    "pattern_predictions": PATTERN_PREDICTIONS,
}


def _ts(value: Any) -> str | None:
    return None if value is None or pd.isna(value) else pd.Timestamp(value).isoformat(sep=" ")


def load(inputs: BaselineInputs, path: Path) -> sqlite3.Connection:
    """A fresh SQLite file with events, event_files and context_clusters, indexed."""
    path.unlink(missing_ok=True)
    con = sqlite3.connect(str(path))
    if con.execute("select sqlite_version()").fetchone() and not _has_sqrt(con):
        con.create_function("sqrt", 1, math.sqrt, deterministic=True)
    con.executescript(
        """
        pragma journal_mode = off;
        pragma synchronous = off;
        create table events (event_id text, pattern_id text, occurred_at text,
                             outcome_quality real, context_hash text, project_id text);
        create table event_files (event_id text, file_path text);
        create table context_clusters (context_hash text primary key,
                                       context_cluster_id integer, context_cluster_label text);
        create table patterns (pattern_id text);
        """
    )
    ev = inputs.events
    con.executemany(
        "insert into events values (?, ?, ?, ?, ?, ?)",
        zip(
            ev["event_id"],
            ev["pattern_id"],
            map(_ts, ev["occurred_at"]),
            ev["outcome_quality"].astype(float),
            ev["context_hash"],
            ev["project_id"],
            strict=True,
        ),
    )
    con.executemany(
        "insert into event_files values (?, ?)",
        (
            (event_id, file_path)
            for event_id, files in zip(ev["event_id"], ev["files"], strict=True)
            if files is not None
            for file_path in files
        ),
    )
    con.executemany(
        "insert into context_clusters values (?, ?, ?)",
        inputs.contexts[["context_hash", "context_cluster_id", "context_cluster_label"]]
        .astype(object)
        .itertuples(index=False, name=None),
    )
    con.executemany(
        "insert into patterns values (?)",
        ((p,) for p in inputs.pattern_ids["pattern_id"]),
    )
    con.executescript(
        """
        create index event_files_event on event_files (event_id);
        create index events_event on events (event_id);
        """
    )
    con.commit()
    return con


def _has_sqrt(con: sqlite3.Connection) -> bool:
    try:
        con.execute("select sqrt(4.0)").fetchone()
    except sqlite3.OperationalError:
        return False
    return True


def run_all(con: sqlite3.Connection, v: dict[str, Any]) -> dict[str, float]:
    """Build every mart as a table (as dbt materializes them); returns seconds per mart,
    the shared week-annotated event table counted in the first."""
    import time

    params = {key: v[key] for key in _PARAMS}
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    con.executescript(
        f"""
        drop table if exists ev;
        create temp table ev as
            select event_id, pattern_id, occurred_at, outcome_quality, context_hash,
                   project_id, {WEEK} as week
            from events;
        create index ev_event on ev (event_id);
        create index ev_pattern_week on ev (pattern_id, week);
        """
    )
    for name, sql in QUERIES.items():
        if name == "pattern_predictions" and not _has_rows(con, "context_clusters"):
            continue
        con.execute(f"drop table if exists {name}")
        con.execute(f"create table {name} as {sql}", params)
        if name == "pattern_predictions":
            _add_intervals(con, float(v["prediction_interval"]))
        con.commit()
        seconds[name] = time.perf_counter() - started
        started = time.perf_counter()
    return seconds


def _has_rows(con: sqlite3.Connection, table: str) -> bool:
    return con.execute(f"select exists (select 1 from {table})").fetchone()[0] == 1


def _add_intervals(con: sqlite3.Connection, mass: float) -> None:
    """SQLite has no Beta quantile either: compute it in Python (as the dbt Python model
    does, engram.posterior) and write it back by rowid."""
    rows = con.execute(
        "select rowid, posterior_alpha, posterior_beta from pattern_predictions"
    ).fetchall()
    if not rows:
        return
    ids, alpha, beta = (np.asarray(c) for c in zip(*rows, strict=True))
    low, high = beta_interval(alpha.astype(float), beta.astype(float), mass)
    con.executemany(
        "update pattern_predictions set ci_low = ?, ci_high = ? where rowid = ?",
        zip(low.tolist(), high.tolist(), ids.tolist(), strict=True),
    )


def read_results(con: sqlite3.Connection) -> dict[str, pd.DataFrame]:
    """The mart tables run_all built, for the answer check (not timed)."""
    built = {r[0] for r in con.execute("select name from sqlite_master where type = 'table'")}
    return {
        name: pd.read_sql_query(f"select * from {name}", con) for name in QUERIES if name in built
    }


_PARAMS = (
    "trend_min_events",
    "trend_min_abs_t",
    "cooccurrence_min_support",
    "cooccurrence_max_files",
    "prediction_prior_strength",
    "prior_mean_steps",
)
