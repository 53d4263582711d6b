"""Full build vs a refresh after +1% events and +1% new patterns (issue 18, item 1).

    python -m bench.refresh --patterns 100000 --events 1000000

Generates data (engram.generate), holds back every 100th pattern and the newest 1% of the
events, ingests the rest, gives every text a vector
(synthetic clustered vectors by default, `--vectors model` for the real model), and
times `dbt build` + publish of the serving copy. Then it ingests the held-back part and
times the same build the way `engram build` runs it after an ingest (incremental models,
data tests scoped by the watermark in $ENGRAM_CHANGED_SINCE, no unit tests for the same
code, the full build's parse reused) + publish. It prints per-model seconds of both
builds and the ratio refresh / full, measured in the same run on the same machine, and
writes them to WORK/refresh.json. A clean work directory each run (tmp by default).

Two ways to split (--split), because they touch different amounts of history:

- `recent` (default): a drop as a sensor sees it. The held-back patterns are new: their
  events before the cut are never loaded (they did not exist yet), so the append is the
  newest 1% of events, some of them the new patterns' first uses. New events fall in the
  last weeks, so week-incremental models recompute only those.
- `scattered`: late-arriving history. The held-back patterns come with all their events,
  spread over every week of the history (plus the newest 1% of the others: about 2.6% of
  the events at 10M), so every week is touched. The only split before 2026-12-02 evening.

A run with `--keep-before-refresh` keeps the state its refresh started from, and

    python -m bench.refresh --replay EARLIER_WORK --work NEW_WORK

times that refresh again (build + publish, the same way) with the code of this checkout,
beside the earlier run's refresh model by model: a change measured in minutes instead of
a new 1M-pattern run (~15 min), and new and old code alternated on the same state.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from bench.memory import RssSampler, peak_by_node, unix_seconds, wait_with_peak_rss

if TYPE_CHECKING:
    from engram.query.serving import PublishResult

SPLITS = ("recent", "scattered")

# The models whose every row can move on any append (a global prior, group sizes and
# centroids, neighbour lists of shared descriptions, findings ranked against the whole
# library): the floor line of the report says what a refresh would cost without them.
# int_patterns__clustered and pattern_clusters stay listed for comparability with runs
# before their split (issue 18: now new patterns' rows and a view); the group facts that
# move for every member are int_pattern_texts__described's.
EVERY_ROW_MODELS = (
    "pattern_predictions",
    "pattern_alerts",
    "int_patterns__clustered",
    "pattern_similar_pairs",
    "pattern_clusters",
    "int_pattern_texts__described",
    "int_pattern_texts__neighbors",
)


def node_times(results: dict[str, Any], manifest: dict[str, Any]) -> dict[str, float]:
    """From a dbt run's run_results and manifest: the span of its nodes (first start to
    last end), their summed seconds (`busy`: both threads' work), and the seconds of the
    EVERY_ROW_MODELS and of the tests that read one of them (`every_row`)."""
    every_row = {
        f"model.{manifest['metadata'].get('project_name', 'engram')}.{m}" for m in EVERY_ROW_MODELS
    }
    nodes = manifest.get("nodes", {})
    starts, ends = [], []
    busy = attached = 0.0
    for result in results["results"]:
        timing = [t for t in result.get("timing", []) if t.get("started_at")]
        if not timing:
            continue
        start = min(unix_seconds(t["started_at"]) for t in timing)
        end = max(unix_seconds(t["completed_at"]) for t in timing)
        seconds = end - start
        starts.append(start)
        ends.append(end)
        busy += seconds
        uid = result["unique_id"]
        reads = set(nodes.get(uid, {}).get("depends_on", {}).get("nodes", []))
        if uid in every_row or (uid.startswith("test.") and reads & every_row):
            attached += seconds
    span = max(ends) - min(starts) if starts else 0.0
    return {"span": span, "busy": busy, "every_row": attached}


def tests_by_model(results: dict[str, Any], manifest: dict[str, Any]) -> dict[str, list[float]]:
    """From a dbt run's run_results and manifest: per model, [seconds, count] of the data
    tests attached to it (the model a test is declared on; the first model it reads for a
    singular test; "source <table>" for a source's tests), so a report can say whose tests
    a build spends its test time on."""
    nodes = manifest.get("nodes", {})
    out: dict[str, list[float]] = {}
    for result in results["results"]:
        uid = result["unique_id"]
        if not uid.startswith("test."):
            continue
        node = nodes.get(uid, {})
        reads = node.get("depends_on", {}).get("nodes", [])
        attached = node.get("attached_node") or next(
            (n for n in reads if n.startswith("model.")), reads[0] if reads else "(nothing)"
        )
        name = attached.split(".")[-1]
        if attached.startswith("source."):
            name = f"source {'.'.join(attached.split('.')[-2:])}"
        entry = out.setdefault(name, [0.0, 0])
        entry[0] += float(result.get("execution_time") or 0.0)
        entry[1] += 1
    return out


def floor_without_every_row(run: dict[str, Any]) -> tuple[float, float]:
    """(build, publish) seconds of a run with EVERY_ROW_MODELS, their tests and their
    serving syncs at zero: arithmetic on the measured run, not a measurement. The build
    keeps its seconds outside the nodes (interpreter, imports, parsing) and its span
    shrinks in proportion to the node seconds removed (both threads busy as densely as
    measured); the publish loses those tables' sync steps."""
    times = run["node_times"]
    outside = run["build_seconds"] - times["span"]
    share = times["every_row"] / times["busy"] if times["busy"] else 0.0
    build = outside + times["span"] * (1.0 - share)
    syncs = sum(
        seconds
        for step, (seconds, _how) in run.get("publish_steps", {}).items()
        if step.split(".")[-1] in EVERY_ROW_MODELS
    )
    return build, run["publish_seconds"] - syncs


def split(
    source: Path, base: Path, append: Path, share: float, mode: str = "recent"
) -> dict[str, Any]:
    """Write base/ and append/: every round(1/share)-th pattern and the newest `share` of
    the events (the generator writes events in time order) go to append/; the held-back
    patterns' older events are dropped (mode "recent") or appended too ("scattered"; see
    the module doc). Streams the events file, so 10M events need no memory."""
    if mode not in SPLITS:
        raise ValueError(f"split mode must be one of {SPLITS}, got {mode!r}")
    every = max(2, round(1 / share))
    base.mkdir(parents=True, exist_ok=True)
    append.mkdir(parents=True, exist_ok=True)
    held: set[str] = set()
    n_patterns = 0
    with (
        (source / "patterns.jsonl").open("rb") as src,
        (base / "patterns.jsonl").open("wb") as head,
        (append / "patterns.jsonl").open("wb") as tail,
    ):
        for i, line in enumerate(src):
            n_patterns += 1
            if i % every == every // 2:
                held.add(orjson.loads(line)["pattern_id"])
                tail.write(line)
            else:
                head.write(line)
    with (source / "events.jsonl").open("rb") as src:
        n_events = sum(1 for _ in src)
    newest = n_events - int(n_events * share)
    moved = dropped = 0
    with (
        (source / "events.jsonl").open("rb") as src,
        (base / "events.jsonl").open("wb") as head,
        (append / "events.jsonl").open("wb") as tail,
    ):
        for i, line in enumerate(src):
            new_pattern = orjson.loads(line)["pattern_id"] in held
            if i >= newest or (new_pattern and mode == "scattered"):
                tail.write(line)
                moved += 1
            elif new_pattern:  # "recent": a new pattern has no uses before the cut
                dropped += 1
            else:
                head.write(line)
    return {
        "patterns": n_patterns,
        "new_patterns": len(held),
        "events": n_events - dropped,
        "new_events": moved,
        "dropped_events": dropped,
        "split": mode,
    }


def give_vectors(db: Path, vectors: str) -> float:
    """Vectors for every text not yet embedded; returns seconds."""
    from ingest.embedder import Embedder
    from ingest.embeddings import embed_missing
    from ingest.warehouse import connect_for_write

    started = time.perf_counter()
    con = connect_for_write(db)
    try:
        if vectors == "synthetic":
            from bench.vectors import SyntheticTagEmbedder, fill_synthetic

            fill_synthetic(con)
            embed_missing(con, SyntheticTagEmbedder())  # records the embed pass (the tag)
        else:
            embed_missing(con, Embedder())
    finally:
        con.close()
    return time.perf_counter() - started


def _free_bytes(db: Path) -> int:
    import duckdb

    from engram.compact import free_bytes

    con = duckdb.connect(str(db), read_only=True)
    try:
        return free_bytes(con)
    finally:
        con.close()


def keep_state(db: Path, into: Path) -> None:
    """Copy the warehouse and its serving copies to `into` (same file names), so that a
    refresh can be replayed model by model, or its publish alone, from the same state."""
    from engram.build import unit_tests_record
    from engram.query.serving import serving_root

    into.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(db, into / db.name)
    shutil.copytree(serving_root(db), serving_root(into / db.name), symlinks=True)
    record, copy = unit_tests_record(db), unit_tests_record(into / db.name)
    # so a replay skips them as the refresh did ($ENGRAM_UNIT_TESTS_RECORD: one for both)
    if record.exists() and record.resolve() != copy.resolve():
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(record, copy)


def timed_build(
    db: Path,
    work: Path,
    name: str,
    parsed_in: Path | None = None,
    *,
    skip_unit_tests: bool = False,
) -> dict[str, Any]:
    """`dbt build` as a child process with the arguments `engram build` gives it
    (engram.build.build_plan: after a first build, the watermark that scopes the data tests,
    and no unit tests while the code is the one they passed with), then the publish; wall
    seconds, the child's peak RSS, per-model seconds and the tests' total seconds.
    skip_unit_tests: build_plan's (a replay of a refresh that ran none, with changed
    code)."""
    from engram.build import build_plan, dbt_command, dbt_cwd, dbt_env
    from engram.project import project_dir
    from engram.query.serving import prepare_publish, publish

    env = dbt_env(db)
    env["DBT_TARGET_PATH"] = str(work / f"target_{name}")
    # `engram build` keeps one target folder, so a build finds the previous one's parse
    # (dbt's partial parsing); each build here has its own folder for its run_results
    saved_parse = None if parsed_in is None else parsed_in / "partial_parse.msgpack"
    if saved_parse is not None and saved_parse.exists():
        (work / f"target_{name}").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(saved_parse, work / f"target_{name}" / saved_parse.name)
    env["DBT_LOG_PATH"] = str(work / f"logs_{name}")
    project = str(project_dir())
    plan = build_plan(db, skip_unit_tests=skip_unit_tests)
    env.update(plan.env)
    command = [*dbt_command(), *plan.args, "--project-dir", project, "--profiles-dir", project]
    started = time.perf_counter()
    prepared = prepare_publish(db)  # as `engram build`: the publish's file copy beside dbt
    with (work / f"{name}.log").open("w") as out:
        child = subprocess.Popen(command, env=env, cwd=dbt_cwd(db), stdout=out, stderr=out)
        # the child's own RSS, sampled: wait4's figure starts at this (large) runner's RSS
        sampler = RssSampler(child.pid, interval=0.2)
        sampler.start()
        exit_code, peak_rss = wait_with_peak_rss(child)
        sampler.stop()
    build_seconds = time.perf_counter() - started
    if exit_code != 0:
        if prepared is not None:
            prepared.discard()
        raise SystemExit(f"dbt build ({name}) failed with exit {exit_code}: see {work / name}.log")
    plan.succeeded(db)
    results = json.loads((work / f"target_{name}" / "run_results.json").read_text())
    manifest = json.loads((work / f"target_{name}" / "manifest.json").read_text())
    models: dict[str, float] = {}
    tests = 0.0
    n_tests = n_unit_tests = 0
    for result in results["results"]:
        kind, node = result["unique_id"].split(".")[0], result["unique_id"].split(".")[-1]
        seconds = float(result.get("execution_time") or 0.0)
        if kind == "model":
            models[node] = seconds
        elif kind in ("test", "unit_test"):
            tests += seconds
            n_tests += 1
            n_unit_tests += kind == "unit_test"
    published = publish(db, prepared=prepared)
    sampled = max((rss for _, rss in sampler.samples), default=0)
    return {
        "sampled_peak_rss_bytes": sampled,
        "peak_rss_by_node": peak_by_node(sampler.samples, results, top=4),
        "warehouse_bytes": db.stat().st_size,
        "free_bytes": _free_bytes(db),
        "build_seconds": build_seconds,
        "publish_seconds": published.seconds,
        # per table / index / file copy, and what each table's sync did
        "publish_steps": publish_steps(published),
        "total_seconds": build_seconds + published.seconds,
        "peak_rss_bytes": peak_rss,
        "models": models,
        "tests_seconds": tests,
        "n_tests": n_tests,
        "n_unit_tests": n_unit_tests,
        "node_times": node_times(results, manifest),
        "tests_by_model": tests_by_model(results, manifest),
    }


def publish_steps(published: PublishResult) -> dict[str, list[Any]]:
    """A publish's seconds per step (each table, index and file copy), with what each
    table's sync or index update did: [seconds, how]."""
    return {
        step: [
            seconds,
            published.table_changes.get(
                step, published.index_changes.get(step.removeprefix("index "), "")
            ),
        ]
        for step, seconds in published.step_seconds.items()
    }


def run(
    n_patterns: int,
    n_events: int,
    share: float,
    seed: int,
    vectors: str,
    work: Path,
    mode: str = "recent",
    keep: bool = False,
) -> dict[str, Any]:
    from engram.generate import generate
    from ingest.loader import ingest_paths

    work.mkdir(parents=True, exist_ok=True)
    db = work / "engram.duckdb"
    print(f"generating {n_patterns} patterns / {n_events} events in {work}", flush=True)
    generate(work / "generated", n_patterns, n_events, seed=seed)
    sizes = split(work / "generated", work / "base", work / "append", share, mode)
    print(
        f"split {mode}: held back {sizes['new_patterns']} patterns and {sizes['new_events']} "
        f"events ({sizes['dropped_events']} older events of the new patterns dropped)",
        flush=True,
    )
    ingest_paths([work / "base"], db, embed=False)
    give_vectors(db, vectors)
    print("full build + publish ...", flush=True)
    full = timed_build(db, work, "full")
    ingest_paths([work / "append"], db, embed=False)
    give_vectors(db, vectors)
    if keep:  # untimed: the state a refresh starts from, to replay parts of it later
        keep_state(db, work / "before_refresh")
    print("refresh build + publish ...", flush=True)
    refresh = timed_build(db, work, "refresh", parsed_in=work / "target_full")
    from engram.compact import compact

    compacted = compact(db)  # what `engram compact` (or build's automatic one) would give
    return {
        "sizes": sizes,
        "vectors": vectors,
        "full": full,
        "refresh": refresh,
        "compact": {"seconds": compacted.seconds, "warehouse_bytes": compacted.bytes_after},
    }


def report(result: dict[str, Any]) -> str:
    full, refresh = result["full"], result["refresh"]
    lines = [f"{'model':<46}{'full s':>9}{'refresh s':>11}{'ratio':>8}"]
    for name in sorted(full["models"], key=lambda n: -full["models"][n]):
        a, b = full["models"][name], refresh["models"].get(name, 0.0)
        lines.append(f"{name:<46}{a:>9.2f}{b:>11.2f}{(b / a if a else 0):>8.2f}")
    for label, key in (
        ("data tests (sum)", "tests_seconds"),
        ("dbt build (wall)", "build_seconds"),
        ("publish", "publish_seconds"),
        ("build + publish", "total_seconds"),
    ):
        a, b = full[key], refresh[key]
        lines.append(f"{label:<46}{a:>9.2f}{b:>11.2f}{(b / a if a else 0):>8.2f}")
    if "node_times" in refresh:
        build, publish = floor_without_every_row(refresh)
        total = full["total_seconds"]
        lines.append(
            f"refresh without {', '.join(EVERY_ROW_MODELS)} (their nodes, tests and syncs at "
            f"zero; arithmetic on this run, not measured): build {build:.1f} + publish "
            f"{publish:.1f} = {build + publish:.1f} s, {(build + publish) / total:.3f} of the full"
        )
    if "tests_by_model" in refresh:
        by_model = refresh["tests_by_model"]
        slowest = sorted(by_model, key=lambda m: -by_model[m][0])[:10]
        lines.append(
            "data tests of the refresh by the model they test, most seconds first "
            "(execution time summed over both threads; count):"
        )
        lines.extend(f"  {m:<44}{by_model[m][0]:>9.2f}{int(by_model[m][1]):>6}" for m in slowest)
    lines.append("publish, slowest steps (full s / refresh s, what the refresh's sync did):")
    steps_full, steps_refresh = full.get("publish_steps", {}), refresh.get("publish_steps", {})
    for step in sorted(steps_refresh, key=lambda n: -steps_refresh[n][0])[:10]:
        a = steps_full.get(step, [0.0, ""])[0]
        b, how = steps_refresh[step]
        lines.append(f"  {step:<44}{a:>9.2f}{b:>11.2f}  {how}")
    gib = 2**30
    lines.append(
        f"peak RSS of dbt (sampled, its own): full {full['sampled_peak_rss_bytes'] / gib:.2f} "
        f"GiB, refresh {refresh['sampled_peak_rss_bytes'] / gib:.2f} GiB (wait4, from the "
        f"runner's RSS at the fork: {full['peak_rss_bytes'] / gib:.2f} / "
        f"{refresh['peak_rss_bytes'] / gib:.2f}); tests run: {full['n_tests']} / "
        f"{refresh['n_tests']}, of which unit tests {full.get('n_unit_tests', 0)} / "
        f"{refresh.get('n_unit_tests', 0)}"
    )
    for label, run in (("full", full), ("refresh", refresh)):
        nodes = ", ".join(
            f"{n['node']} {n['peak_rss_bytes'] / gib:.2f}" for n in run["peak_rss_by_node"]
        )
        lines.append(f"  highest sampled RSS during ({label}): {nodes}")
    events = result["sizes"]["events"]
    for label, run in (("after the full build", full), ("after the refresh", refresh)):
        live = run["warehouse_bytes"] - run["free_bytes"]
        lines.append(
            f"warehouse {label}: {run['warehouse_bytes'] / 2**20:,.0f} MiB "
            f"({run['warehouse_bytes'] / events:.0f} B/event), free blocks "
            f"{run['free_bytes'] / 2**20:,.0f} MiB, live {live / events:.0f} B/event"
        )
    packed = result["compact"]
    lines.append(
        f"compacted (engram compact): {packed['warehouse_bytes'] / 2**20:,.0f} MiB "
        f"({packed['warehouse_bytes'] / events:.0f} B/event) in {packed['seconds']:.1f} s"
    )
    return "\n".join(lines)


def replay(earlier: Path, work: Path) -> dict[str, Any]:
    """Time the refresh of an earlier run again, from the state it started from
    (EARLIER/before_refresh, kept by --keep-before-refresh), with this checkout's code, in
    the empty directory `work`; timed_build's result. The earlier full build's parse
    (EARLIER/target_full) is reused, as the timed refresh reused it (code changed since
    makes dbt parse what changed). dbt's unit tests are left out, as the timed refresh of
    unchanged code left them: with changed code engram.build would run them (34 at 1M; a
    replay that ran them had 45.4 s of test node time against the refresh's 29.3), and
    the replay would not compare with the refresh; they check each model's SQL on fixed
    rows, which `make test` does."""
    state = earlier / "before_refresh" / "engram.duckdb"
    if not state.exists():
        raise SystemExit(
            f"{state} does not exist: replay needs a run made with "
            f"`python -m bench.refresh --keep-before-refresh --work {earlier}`"
        )
    if work.exists() and any(work.iterdir()):
        raise SystemExit(f"--work {work} is not empty: a replay writes a fresh copy there")
    work.mkdir(parents=True, exist_ok=True)
    keep_state(state, work)  # copies: the kept state stays as it was, for the next replay
    parsed = earlier / "target_full"
    return timed_build(
        work / state.name,
        work,
        "replay",
        parsed_in=parsed if parsed.exists() else None,
        skip_unit_tests=True,
    )


def replay_report(replayed: dict[str, Any], earlier: dict[str, Any] | None) -> str:
    """The replay beside the earlier run's refresh (its refresh.json), when there is one."""
    before = earlier or {"models": {}, "publish_steps": {}}
    lines = [f"{'model':<46}{'earlier s':>10}{'replay s':>10}"]
    models = replayed["models"]
    for name in sorted(models, key=lambda n: -models[n])[:20]:
        lines.append(f"{name:<46}{before['models'].get(name, 0.0):>10.2f}{models[name]:>10.2f}")
    for label, key in (
        ("data tests (sum)", "tests_seconds"),
        ("dbt build (wall)", "build_seconds"),
        ("publish", "publish_seconds"),
        ("build + publish", "total_seconds"),
    ):
        lines.append(f"{label:<46}{before.get(key, 0.0):>10.2f}{replayed[key]:>10.2f}")
    lines.append("publish, slowest steps (earlier s / replay s, what the replay's sync did):")
    steps = replayed["publish_steps"]
    for step in sorted(steps, key=lambda n: -steps[n][0])[:10]:
        a = before["publish_steps"].get(step, [0.0, ""])[0]
        lines.append(f"  {step:<44}{a:>9.2f}{steps[step][0]:>10.2f}  {steps[step][1]}")
    lines.append(
        f"tests run: {before.get('n_tests', 0)} / {replayed['n_tests']}, of which unit "
        f"tests {before.get('n_unit_tests', 0)} / {replayed['n_unit_tests']}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.refresh", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--patterns", type=int, default=100_000, help="patterns generated (default 100000)"
    )
    parser.add_argument(
        "--events", type=int, default=1_000_000, help="events generated (default 1000000)"
    )
    parser.add_argument(
        "--share", type=float, default=0.01, help="share held back and appended (0.01)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vectors", choices=["synthetic", "model"], default="synthetic")
    parser.add_argument(
        "--split",
        choices=SPLITS,
        default="recent",
        help="recent: new patterns and the newest events (a drop); scattered: held-back "
        "patterns with their whole history (late data touching every week); see above",
    )
    parser.add_argument("--work", type=Path, help="work directory (default: a new temp dir)")
    parser.add_argument(
        "--keep-before-refresh",
        action="store_true",
        help="copy the warehouse and serving copies, as the refresh finds them, to "
        "WORK/before_refresh/ (untimed; to replay the refresh's models or publish)",
    )
    parser.add_argument(
        "--replay",
        type=Path,
        metavar="EARLIER_WORK",
        help="instead of a new run: time EARLIER_WORK's refresh again from the state it "
        "kept (--keep-before-refresh) with this checkout's code, in --work (required, "
        "empty), beside that run's refresh",
    )
    args = parser.parse_args(argv)
    if args.replay is not None:
        if args.work is None:
            parser.error("--replay needs --work, an empty directory for the copy it times")
        replayed = replay(args.replay, args.work)
        (args.work / "replay.json").write_text(json.dumps(replayed, indent=2))
        earlier = args.replay / "refresh.json"
        before = json.loads(earlier.read_text())["refresh"] if earlier.exists() else None
        print(replay_report(replayed, before))
        return 0
    if not 0 < args.share < 0.5:
        parser.error(f"--share must be in (0, 0.5), got {args.share}")
    work = args.work or Path(tempfile.mkdtemp(prefix="engram-refresh-"))
    result = run(
        args.patterns,
        args.events,
        args.share,
        args.seed,
        args.vectors,
        work,
        args.split,
        keep=args.keep_before_refresh,
    )
    (work / "refresh.json").write_text(json.dumps(result, indent=2))
    print(report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
