"""Synthetic engram input with planted, known structure, for tests and benchmarks.

Real agent logs cannot tell us whether the marts find the right answer, so this module
writes input-contract-conforming `patterns.jsonl` / `events.jsonl` in which the answers
are planted on purpose (per-topic best patterns, patterns that improve or decline over
time, files that travel together, task texts that repeat) and records them in
`truth.json`. Output is a pure function of the arguments, and it streams: events are
drawn per chunk with numpy and written line by line, so 10M events fit in bounded memory.

The prose it draws from (kinds of coding-agent work, each with its approaches, task
texts, files, tools and projects) is data, not code: `topics.json` beside this module,
shipped as package data and read into `TOPICS` at import. Editing it changes every
generated file; tests/test_generate_golden.py pins the output bytes for a few seeds.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from importlib import resources
from pathlib import Path

import numpy as np
import orjson

__all__ = ["TOPICS", "Family", "GenerationSummary", "Topic", "generate", "render_contexts"]


# --------------------------------------------------------------------------- templates


@dataclass(frozen=True, slots=True)
class Family:
    """One concrete approach to a topic's problem; its paraphrases embed close together."""

    key: str
    pattern_type: str
    paraphrases: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Topic:
    """A kind of coding-agent work: its approaches, task texts, files, tools and projects.

    `{x}` in a paraphrase or task is filled from `slots`. `hot_pairs` are the planted
    co-travelling files; `files` is the rest of the pool. `unseen` are task phrasings that
    never occur as an event context, for testing prediction on new text. The first family
    is the topic's canonical approach: its best patterns are drawn from it.
    """

    slug: str
    name: str
    projects: tuple[str, ...]
    tools: tuple[str, ...]
    slots: tuple[str, ...]
    hot_pairs: tuple[tuple[str, str], tuple[str, str]]
    files: tuple[str, ...]
    families: tuple[Family, ...]
    tasks: tuple[str, ...]
    unseen: tuple[str, ...]


def _load_topics() -> tuple[Topic, ...]:
    """Build TOPICS from topics.json: the same fields, with every list made a tuple."""
    raw = orjson.loads((resources.files("engram.generate") / "topics.json").read_bytes())
    topics = []
    for t in raw:
        hot = tuple((a, b) for a, b in t["hot_pairs"])
        if len(hot) != 2:  # the quality model plants exactly two pairs per topic
            raise ValueError(f"topic {t['slug']!r}: expected 2 hot_pairs, got {len(hot)}")
        families = tuple(
            Family(f["key"], f["pattern_type"], tuple(f["paraphrases"])) for f in t["families"]
        )
        topics.append(
            Topic(
                slug=t["slug"],
                name=t["name"],
                projects=tuple(t["projects"]),
                tools=tuple(t["tools"]),
                slots=tuple(t["slots"]),
                hot_pairs=(hot[0], hot[1]),
                files=tuple(t["files"]),
                families=families,
                tasks=tuple(t["tasks"]),
                unseen=tuple(t["unseen"]),
            )
        )
    return tuple(topics)


TOPICS: tuple[Topic, ...] = _load_topics()

# Generic wrappers that vary a description's wording without moving it between families.
_PREFIXES: tuple[str, ...] = ("", "", "", "Fix: ", "What worked: ", "Approach: ", "Recipe: ")
_SUFFIXES: tuple[str, ...] = (
    "",
    "",
    "",
    " Then rerun the tests.",
    " Verified with a clean rebuild.",
    " Confirmed in CI afterwards.",
)

# --------------------------------------------------------------------------- quality model

NORMAL, BEST, IMPROVING, DECLINING, POOR = range(5)
ROLE_NAMES: tuple[str, ...] = ("normal", "best", "improving", "declining", "poor")
# Which special roles a topic with m patterns gets, in order of priority.
_ROLE_ORDER: tuple[int, ...] = (BEST, IMPROVING, DECLINING, BEST, IMPROVING, DECLINING, POOR)
_EXTRA_POOR_AT, _EXTRA_BEST_AT = 50, 100  # patterns per topic
# Share of a topic's pattern draws that each special pattern receives. Trending patterns
# get more at small sizes, so that each has about TREND_MIN_EVENTS events to regress on.
BEST_SHARE, POOR_SHARE = 0.08, 0.02
TREND_SHARE = (0.05, 0.10)
TREND_MIN_EVENTS = 36

OWN_TOPIC_SHARE = 0.85  # events that use a pattern of the session's own topic
CROSS_TOPIC_CAP = 0.4  # a pattern used off-topic is mediocre at best
BEST_BASE = (0.85, 0.9)
NORMAL_BASE = (0.3, 0.65)
POOR_BASE = (0.12, 0.18)
IMPROVING_LINE = (0.25, 0.85)  # quality at the start and the end of the period
DECLINING_LINE = (0.85, 0.25)
_TREND_LINES = {IMPROVING: IMPROVING_LINE, DECLINING: DECLINING_LINE}
PAIR_TREND = (-0.2, 0.2)  # added to events carrying an improving hot pair
NOISE_SD = 0.1
HOT_PAIR_SHARE = 0.4  # of a topic's events carry hot pair 0, and as many carry hot pair 1
SESSION_LENGTH = (1, 8)
FIRST_SEEN_BEFORE_DAYS = 180  # patterns were first seen up to this long before `start`

_CHUNK = 50_000  # events (and patterns) drawn and written per batch
_MAX_EXTRA_FILES = 4


@dataclass(frozen=True)
class GenerationSummary:
    """What `generate` wrote, for the CLI to report."""

    outdir: Path
    n_patterns: int
    n_events: int
    n_distinct_contexts: int
    seconds: float


def render_contexts(topic: Topic) -> list[str]:
    """Every context string a topic can produce: each task with each slot value."""
    out: list[str] = []
    for task in topic.tasks:
        if "{x}" in task:
            out.extend(task.replace("{x}", slot) for slot in topic.slots)
        else:
            out.append(task)
    return out


# --------------------------------------------------------------------------- lookup tables


@dataclass(frozen=True)
class _Tables:
    """Flattened, index-addressable views of TOPICS, so per-chunk draws can be vectorized."""

    n_topics: int
    family_ids: list[str]  # global family index -> "topic/family"
    family_types: list[str]
    family_offset: np.ndarray  # topic -> first global family index
    family_count: np.ndarray  # topic -> number of families
    renderings: list[list[str]]  # global family -> paraphrases rendered with every slot
    contexts: list[str]  # global context code -> text
    template_start: np.ndarray  # topic x template -> first context code (padded)
    template_count: np.ndarray  # topic x template -> number of renderings (padded with 1)
    template_cum: np.ndarray  # topic x template -> cumulative choice probability (padded 2.0)
    pool_names: list[list[str]]  # topic -> non-hot files
    pool_size: np.ndarray
    hot_names: list[tuple[tuple[str, str], tuple[str, str]]]
    tool_combos: list[list[list[str]]]  # topic -> list of tool subsets of size 1..3
    projects: list[tuple[str, ...]]


def _build_tables() -> _Tables:
    n_topics = len(TOPICS)
    family_ids: list[str] = []
    family_types: list[str] = []
    renderings: list[list[str]] = []
    family_offset = np.zeros(n_topics, dtype=np.int64)
    family_count = np.zeros(n_topics, dtype=np.int64)
    contexts: list[str] = []
    max_tasks = max(len(t.tasks) for t in TOPICS)
    template_start = np.zeros((n_topics, max_tasks), dtype=np.int64)
    template_count = np.ones((n_topics, max_tasks), dtype=np.int64)
    template_cum = np.full((n_topics, max_tasks), 2.0)
    for t, topic in enumerate(TOPICS):
        family_offset[t] = len(family_ids)
        family_count[t] = len(topic.families)
        for family in topic.families:
            family_ids.append(f"{topic.slug}/{family.key}")
            family_types.append(family.pattern_type)
            rendered: list[str] = []
            for text in family.paraphrases:
                # every paraphrase gets len(slots) entries, so a uniform index is unbiased
                rendered.extend(text.replace("{x}", slot) for slot in topic.slots)
            renderings.append(rendered)
        # Zipf-like task popularity: a few tasks dominate, as in real logs.
        weights = 1.0 / np.arange(1, len(topic.tasks) + 1) ** 0.8
        template_cum[t, : len(topic.tasks)] = np.cumsum(weights / weights.sum())
        template_cum[t, len(topic.tasks) - 1] = 1.0
        for k, task in enumerate(topic.tasks):
            template_start[t, k] = len(contexts)
            if "{x}" in task:
                contexts.extend(task.replace("{x}", slot) for slot in topic.slots)
                template_count[t, k] = len(topic.slots)
            else:
                contexts.append(task)
    tool_combos = [
        [list(c) for r in (1, 2, 3) for c in itertools.combinations(topic.tools, r)]
        for topic in TOPICS
    ]
    return _Tables(
        n_topics=n_topics,
        family_ids=family_ids,
        family_types=family_types,
        family_offset=family_offset,
        family_count=family_count,
        renderings=renderings,
        contexts=contexts,
        template_start=template_start,
        template_count=template_count,
        template_cum=template_cum,
        pool_names=[list(topic.files) for topic in TOPICS],
        pool_size=np.array([len(topic.files) for topic in TOPICS], dtype=np.int64),
        hot_names=[topic.hot_pairs for topic in TOPICS],
        tool_combos=tool_combos,
        projects=[topic.projects for topic in TOPICS],
    )


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class _Plan:
    """Per-pattern assignments (numpy, O(n_patterns)) and per-topic sampling tables."""

    topic: np.ndarray  # int16, pattern -> topic
    family: np.ndarray  # int32, pattern -> global family index
    role: np.ndarray  # int8
    base: np.ndarray  # float32 base quality (unused for improving/declining)
    active: np.ndarray  # topics that have at least one pattern
    special_ids: np.ndarray  # topic x slot -> pattern index (-1 padded)
    special_count: np.ndarray  # topic -> number of special patterns
    special_cum: np.ndarray  # topic x slot -> cumulative share (2.0 padded)
    normal_ids: np.ndarray  # normal patterns grouped by topic
    normal_start: np.ndarray
    normal_count: np.ndarray
    improving_pair: np.ndarray  # topic x 2 -> bool
    role_share: dict[int, float]  # special role -> share of its topic's pattern draws


def _roles_for(m: int) -> list[int]:
    roles = list(_ROLE_ORDER)
    if m >= _EXTRA_POOR_AT:
        roles.append(POOR)
    if m >= _EXTRA_BEST_AT:
        roles.append(BEST)
    return roles[:m]


def _role_shares(n_events: int, n_active: int) -> dict[int, float]:
    """Draw share per special role; trend patterns get enough events to show their slope."""
    per_topic = n_events / n_active
    low, high = TREND_SHARE
    trend = high if per_topic <= 0 else min(high, max(low, TREND_MIN_EVENTS / per_topic))
    return {BEST: BEST_SHARE, IMPROVING: trend, DECLINING: trend, POOR: POOR_SHARE}


def _make_plan(n_patterns: int, n_events: int, tables: _Tables, rng: np.random.Generator) -> _Plan:
    n_topics = tables.n_topics
    role_share = _role_shares(n_events, min(n_patterns, n_topics))
    topic = np.empty(n_patterns, dtype=np.int16)
    topic[rng.permutation(n_patterns)] = np.arange(n_patterns) % n_topics
    fam_local = (rng.random(n_patterns) * tables.family_count[topic]).astype(np.int32)
    family = (tables.family_offset[topic] + fam_local).astype(np.int32)
    role = np.zeros(n_patterns, dtype=np.int8)
    base = rng.uniform(*NORMAL_BASE, size=n_patterns).astype(np.float32)

    by_topic = np.argsort(topic, kind="stable")
    counts = np.bincount(topic, minlength=n_topics)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    max_special = len(_ROLE_ORDER) + 2
    special_ids = np.full((n_topics, max_special), -1, dtype=np.int64)
    special_cum = np.full((n_topics, max_special), 2.0)
    special_count = np.zeros(n_topics, dtype=np.int64)
    for t in range(n_topics):
        members = by_topic[starts[t] : starts[t] + counts[t]]
        roles = _roles_for(len(members))
        if not roles:
            continue
        chosen = rng.choice(members, size=len(roles), replace=False)
        shares = np.array([role_share[r] for r in roles])
        if len(members) == len(roles):  # no normal patterns left: specials take all draws
            shares = shares / shares.sum()
        for pid, r in zip(chosen, roles, strict=True):
            role[pid] = r
            if r == BEST:
                family[pid] = tables.family_offset[t]  # the topic's canonical approach
                base[pid] = rng.uniform(*BEST_BASE)
            elif r == POOR:
                base[pid] = rng.uniform(*POOR_BASE)
            elif r in (IMPROVING, DECLINING):
                base[pid] = float(np.mean(IMPROVING_LINE))
        special_ids[t, : len(roles)] = chosen
        special_cum[t, : len(roles)] = np.cumsum(shares)
        if len(members) == len(roles):
            special_cum[t, len(roles) - 1] = 1.0
        special_count[t] = len(roles)

    normal_ids = by_topic[role[by_topic] == NORMAL]
    normal_count = np.bincount(topic[normal_ids], minlength=n_topics)
    normal_start = np.concatenate(([0], np.cumsum(normal_count)[:-1]))
    active = np.flatnonzero(counts > 0)
    improving_pair = np.zeros((n_topics, 2), dtype=bool)
    chosen_topics = rng.choice(active, size=(len(active) + 1) // 2, replace=False)
    improving_pair[chosen_topics, rng.integers(0, 2, size=len(chosen_topics))] = True
    return _Plan(
        topic=topic,
        family=family,
        role=role,
        base=base,
        active=active,
        special_ids=special_ids,
        special_count=special_count,
        special_cum=special_cum,
        normal_ids=normal_ids,
        normal_start=normal_start,
        normal_count=normal_count,
        improving_pair=improving_pair,
        role_share=role_share,
    )


# --------------------------------------------------------------------------- writers


def _iso(base: np.datetime64, seconds: np.ndarray) -> list[str]:
    stamps = np.datetime_as_string(base + seconds.astype("timedelta64[s]"), unit="s")
    return [s + "Z" for s in stamps.tolist()]


def _write_patterns(
    path: Path, plan: _Plan, tables: _Tables, start: date, rng: np.random.Generator
) -> None:
    n = len(plan.topic)
    width = max(7, len(str(n - 1)))
    base_time = np.datetime64(datetime(start.year, start.month, start.day), "s")
    max_before = FIRST_SEEN_BEFORE_DAYS * 86_400
    dumps = orjson.dumps
    with path.open("wb", buffering=1 << 20) as out:
        write = out.write
        for lo in range(0, n, _CHUNK):
            hi = min(n, lo + _CHUNK)
            m = hi - lo
            fam = plan.family[lo:hi].tolist()
            role = plan.role[lo:hi].tolist()
            topic = plan.topic[lo:hi].tolist()
            variant = rng.random(m).tolist()
            prefix = rng.integers(0, len(_PREFIXES), size=m).tolist()
            suffix = rng.integers(0, len(_SUFFIXES), size=m).tolist()
            first_seen = _iso(base_time, -rng.integers(1, max_before, size=m))
            for k in range(m):
                f = fam[k]
                options = tables.renderings[f]
                text = options[int(variant[k] * len(options))]
                record = {
                    "pattern_id": f"p{lo + k:0{width}d}",
                    "description": _PREFIXES[prefix[k]] + text + _SUFFIXES[suffix[k]],
                    "pattern_type": tables.family_types[f],
                    "first_seen": first_seen[k],
                    "metadata": {
                        "topic": TOPICS[topic[k]].slug,
                        "family": tables.family_ids[f],
                        "role": ROLE_NAMES[role[k]],
                    },
                }
                # one write per line: orjson's output buffers are oversized, so collecting
                # a chunk's lines would hold ~4 KB per line
                write(dumps(record, option=orjson.OPT_APPEND_NEWLINE))


def _pick_patterns(
    plan: _Plan, session_topic: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Pattern per event: mostly from the event's topic, with per-role shares; returns
    (pattern index, the topic the pattern was drawn from)."""
    n = len(session_topic)
    n_active = len(plan.active)
    source = session_topic.astype(np.int64)
    if n_active > 1:
        position = np.searchsorted(plan.active, source)
        other = plan.active[(position + rng.integers(1, n_active, size=n)) % n_active]
        source = np.where(rng.random(n) < OWN_TOPIC_SHARE, source, other)
    r = rng.random(n)
    slot = (r[:, None] >= plan.special_cum[source]).sum(axis=1)
    is_special = slot < plan.special_count[source]
    special = plan.special_ids[source, np.minimum(slot, plan.special_ids.shape[1] - 1)]
    count = plan.normal_count[source]
    offset = (rng.random(n) * np.maximum(count, 1)).astype(np.int64)
    normal_pos = np.minimum(plan.normal_start[source] + offset, max(len(plan.normal_ids) - 1, 0))
    normal = plan.normal_ids[normal_pos] if len(plan.normal_ids) else np.zeros(n, np.int64)
    return np.where(is_special, special, normal), source


def _write_events(
    path: Path,
    n_events: int,
    plan: _Plan,
    tables: _Tables,
    weeks: int,
    start: date,
    rng: np.random.Generator,
    progress: Callable[[int], None] | None,
) -> np.ndarray:
    """Stream the events; returns which context codes were used (for the distinct count)."""
    used = np.zeros(len(tables.contexts), dtype=bool)
    period = weeks * 7 * 86_400
    base_time = np.datetime64(datetime(start.year, start.month, start.day), "s")
    p_width = max(7, len(str(len(plan.topic) - 1)))
    e_width = max(8, len(str(n_events)))
    low_len, high_len = SESSION_LENGTH
    max_pool = int(tables.pool_size.max())
    pool_mask = np.arange(max_pool)[None, :] >= tables.pool_size[:, None]  # topic x slot
    n_projects = np.array([len(p) for p in tables.projects])
    n_combos = np.array([len(c) for c in tables.tool_combos])
    written = 0
    session_no = 0
    dumps = orjson.dumps
    with path.open("wb", buffering=1 << 20) as out:
        write = out.write
        while written < n_events:
            n = min(_CHUNK, n_events - written)
            # sessions: 1..8 consecutive events sharing topic, project and task text
            lengths = rng.integers(low_len, high_len + 1, size=n)
            ends = np.cumsum(lengths)
            n_sessions = int(np.searchsorted(ends, n)) + 1
            lengths = lengths[:n_sessions].copy()
            lengths[-1] -= int(ends[n_sessions - 1]) - n
            firsts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
            s_topic = plan.active[rng.integers(0, len(plan.active), size=n_sessions)]
            s_project = (rng.random(n_sessions) * n_projects[s_topic]).astype(np.int64)
            s_template = (rng.random(n_sessions)[:, None] >= tables.template_cum[s_topic]).sum(1)
            s_slot = rng.random(n_sessions) * tables.template_count[s_topic, s_template]
            s_context = tables.template_start[s_topic, s_template] + s_slot.astype(np.int64)
            used[s_context] = True
            centre = (written + firsts + 0.5) / n_events * period
            s_time = np.clip(centre + rng.normal(0.0, 6 * 3600, n_sessions), 0, period - 1)
            sess = np.repeat(np.arange(n_sessions), lengths)
            gaps = rng.integers(60, 1200, size=n)
            gaps[firsts] = 0
            walked = np.cumsum(gaps)
            seconds = np.minimum(
                s_time.astype(np.int64)[sess] + walked - walked[firsts][sess], period - 1
            )
            frac = seconds / period
            topic = s_topic[sess]

            pattern, source = _pick_patterns(plan, topic, rng)
            role = plan.role[pattern]
            quality = np.where(
                source == topic, plan.base[pattern], np.minimum(plan.base[pattern], CROSS_TOPIC_CAP)
            ).astype(np.float64)
            for trending, (first, last) in _TREND_LINES.items():
                quality = np.where(role == trending, first + (last - first) * frac, quality)
            # files: maybe one hot pair (never split), plus distinct files from the pool
            u = rng.random(n)
            hot = np.where(u < HOT_PAIR_SHARE, 0, np.where(u < 2 * HOT_PAIR_SHARE, 1, -1))
            has_hot = hot >= 0
            trend = PAIR_TREND[0] + (PAIR_TREND[1] - PAIR_TREND[0]) * frac
            rising = has_hot & plan.improving_pair[topic, np.maximum(hot, 0)]
            quality = quality + np.where(rising, trend, 0.0) + rng.normal(0.0, NOISE_SD, n)
            quality = np.round(np.clip(quality, 0.0, 1.0), 3)
            n_extra = np.where(
                has_hot,
                rng.integers(0, _MAX_EXTRA_FILES + 1, size=n),
                rng.integers(1, _MAX_EXTRA_FILES + 1, size=n),
            )
            keys = rng.random((n, max_pool))
            keys[pool_mask[topic]] = 2.0
            order = np.argsort(keys, axis=1)[:, :_MAX_EXTRA_FILES]
            combo = (rng.random(n) * n_combos[topic]).astype(np.int64)

            # encode the chunk (the only per-event Python loop), one write per line:
            # orjson's output buffers are oversized, so collecting a chunk's lines before
            # writing would hold ~4 KB per line
            stamps = _iso(base_time, seconds)
            session_ids = [f"s{session_no + s + 1:0{e_width}d}" for s in range(n_sessions)]
            projects = [
                tables.projects[t][p]
                for t, p in zip(s_topic.tolist(), s_project.tolist(), strict=True)
            ]
            contexts = [tables.contexts[c] for c in s_context.tolist()]
            columns = (sess, topic, pattern, quality, hot, n_extra, order, combo)
            for k, (s, t, p, q, h, x, row, c) in enumerate(
                zip(*(column.tolist() for column in columns), strict=True)
            ):
                files = list(tables.hot_names[t][h]) if h >= 0 else []
                files.extend(tables.pool_names[t][j] for j in row[:x])
                record = {
                    "event_id": f"e{written + k + 1:0{e_width}d}",
                    "pattern_id": f"p{p:0{p_width}d}",
                    "session_id": session_ids[s],
                    "timestamp": stamps[k],
                    "outcome_quality": q,
                    "files_involved": files,
                    "tools_used": tables.tool_combos[t][c],
                    "context": contexts[s],
                    "project_id": projects[s],
                }
                write(dumps(record, option=orjson.OPT_APPEND_NEWLINE))
            written += n
            session_no += n_sessions
            if progress is not None:
                progress(n)
    return used


def _truth(
    plan: _Plan,
    tables: _Tables,
    n_patterns: int,
    n_events: int,
    seed: int,
    weeks: int,
    start: date,
    n_distinct: int,
) -> dict[str, object]:
    width = max(7, len(str(n_patterns - 1)))

    def ids(where: np.ndarray) -> list[str]:
        return [f"p{int(i):0{width}d}" for i in np.flatnonzero(where)]

    topics = []
    hot_pairs: list[list[str]] = []
    improving_pairs: list[list[str]] = []
    for t in plan.active.tolist():
        topic = TOPICS[t]
        in_topic = plan.topic == t
        pairs = [sorted(pair) for pair in topic.hot_pairs]
        improving = [p for k, p in enumerate(pairs) if plan.improving_pair[t, k]]
        hot_pairs.extend(pairs)
        improving_pairs.extend(improving)
        topics.append(
            {
                "slug": topic.slug,
                "name": topic.name,
                "n_patterns": int(in_topic.sum()),
                "best_family": tables.family_ids[int(tables.family_offset[t])],
                "families": [f"{topic.slug}/{f.key}" for f in topic.families],
                "best_pattern_ids": ids(in_topic & (plan.role == BEST)),
                "improving_pattern_ids": ids(in_topic & (plan.role == IMPROVING)),
                "declining_pattern_ids": ids(in_topic & (plan.role == DECLINING)),
                "poor_pattern_ids": ids(in_topic & (plan.role == POOR)),
                "hot_file_pairs": pairs,
                "improving_file_pairs": improving,
                "projects": list(topic.projects),
                "unseen_tasks": list(topic.unseen),
            }
        )
    return {
        "topics": topics,
        "best_pattern_ids": ids(plan.role == BEST),
        "improving_pattern_ids": ids(plan.role == IMPROVING),
        "declining_pattern_ids": ids(plan.role == DECLINING),
        "poor_pattern_ids": ids(plan.role == POOR),
        "hot_file_pairs": hot_pairs,
        "improving_file_pairs": improving_pairs,
        "n_distinct_contexts": n_distinct,
        "quality_model": {
            "own_topic_share": OWN_TOPIC_SHARE,
            "cross_topic_cap": CROSS_TOPIC_CAP,
            "best_base": list(BEST_BASE),
            "normal_base": list(NORMAL_BASE),
            "poor_base": list(POOR_BASE),
            "improving_line": list(IMPROVING_LINE),
            "declining_line": list(DECLINING_LINE),
            "improving_pair_trend": list(PAIR_TREND),
            "noise_sd": NOISE_SD,
            "hot_pair_share": HOT_PAIR_SHARE,
            "role_share": {ROLE_NAMES[r]: s for r, s in plan.role_share.items()},
        },
        "params": {
            "n_patterns": n_patterns,
            "n_events": n_events,
            "seed": seed,
            "weeks": weeks,
            "start": start.isoformat(),
        },
    }


# --------------------------------------------------------------------------- entry point


def generate(
    outdir: Path,
    n_patterns: int,
    n_events: int,
    seed: int = 0,
    *,
    weeks: int = 52,
    start: date = date(2025, 1, 6),
    progress: Callable[[int], None] | None = None,
) -> GenerationSummary:
    """Write patterns.jsonl, events.jsonl and truth.json into `outdir`.

    Deterministic in (n_patterns, n_events, seed, weeks, start); patterns.jsonl depends on
    (n_patterns, seed, start) only. `progress(n)` gets the events written since its last
    call, once per chunk. Files are written under temporary names and renamed at the end,
    so a reader never sees a half-written file under the final name.
    """
    for name, value, least, need in (
        ("n_patterns", n_patterns, 1, "an integer >= 1"),
        ("n_events", n_events, 0, "an integer >= 0"),
        ("weeks", weeks, 1, "an integer >= 1"),
        ("seed", seed, 0, "a non-negative integer"),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be {need}, got {value!r}")
    if not isinstance(start, date):
        raise ValueError(f"start must be a datetime.date, got {start!r}")
    started = time.perf_counter()
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    plan_seq, pattern_seq, event_seq = np.random.SeedSequence(seed).spawn(3)
    tables = _build_tables()
    plan = _make_plan(n_patterns, n_events, tables, np.random.default_rng(plan_seq))

    targets = {name: outdir / name for name in ("patterns.jsonl", "events.jsonl", "truth.json")}
    partial = {name: path.with_name(path.name + ".partial") for name, path in targets.items()}
    try:
        _write_patterns(
            partial["patterns.jsonl"], plan, tables, start, np.random.default_rng(pattern_seq)
        )
        used = _write_events(
            partial["events.jsonl"],
            n_events,
            plan,
            tables,
            weeks,
            start,
            np.random.default_rng(event_seq),
            progress,
        )
        n_distinct = int(used.sum())
        truth = _truth(plan, tables, n_patterns, n_events, seed, weeks, start, n_distinct)
        partial["truth.json"].write_bytes(
            orjson.dumps(truth, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
        )
        for name, path in targets.items():
            os.replace(partial[name], path)
    finally:
        for path in partial.values():
            path.unlink(missing_ok=True)
    return GenerationSummary(
        outdir=outdir,
        n_patterns=n_patterns,
        n_events=n_events,
        n_distinct_contexts=n_distinct,
        seconds=time.perf_counter() - started,
    )
