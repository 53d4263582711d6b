"""The serving copy: published after each build, switched atomically, and readable while
another process holds the warehouse's write lock."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pytest

from engram.query.errors import MissingMart, QueryError
from engram.query.index import fingerprint
from engram.query.memory import Memory
from engram.query.serving import (
    KEEP_BUILDS,
    LABELS_STEP,
    SERVED_VIEWS,
    current,
    publish,
    serving_root,
)
from ingest.embedder import Embedder
from ingest.loader import ingest_paths

NEW_PATTERN = "Quantum-entangle the cache keys of the zebra scheduler before the eclipse."


@pytest.fixture
def warehouse_copy(planted_warehouse: Path, tmp_path: Path) -> Path:
    """A private copy of the planted warehouse (no serving copy yet)."""
    db = tmp_path / "copy.duckdb"
    shutil.copy(planted_warehouse, db)
    return db


def _hold_write_lock(db: Path) -> subprocess.Popen[str]:
    """Another process opens the warehouse for writing and keeps it open."""
    script = (
        "import duckdb, sys, time\n"
        f"con = duckdb.connect({str(db)!r})\n"
        "con.execute('create table if not exists raw.lock_probe(x int)')\n"
        "print('locked', flush=True)\n"
        "time.sleep(120)\n"
    )
    writer = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None
    assert writer.stdout.readline().strip() == "locked", writer.stderr.read()
    with pytest.raises(duckdb.IOException):  # the lock is really held
        duckdb.connect(str(db), read_only=True)
    return writer


def test_build_publishes_a_serving_copy_with_marts_and_index(planted_warehouse: Path) -> None:
    copy = current(planted_warehouse)
    assert copy is not None and copy.database.exists()
    con = duckdb.connect(str(copy.database), read_only=True)
    try:
        tables = {
            r[0]
            for r in con.execute(
                "select table_schema || '.' || table_name from information_schema.tables"
            ).fetchall()
        }
        meta = con.execute("select build_id, patterns_fingerprint from serving.meta").fetchone()
        ids = [
            r[0]
            for r in con.execute(
                "select pattern_id from marts.dim_patterns where embedding is not null "
                "order by pattern_id"
            ).fetchall()
        ]
    finally:
        con.close()
    assert {"marts.dim_patterns", "staging.stg_contexts", "serving.context_patterns"} <= tables
    assert meta[0] == copy.build_id
    manifest = json.loads((copy.directory / "patterns.manifest.json").read_text())
    assert manifest["fingerprint"] == meta[1] == fingerprint(ids)
    assert manifest["has_ann"] and (copy.directory / "patterns.ivf.npz").exists()


@pytest.mark.parametrize(
    ("mart", "spread"),
    [
        ("pattern_project_predictions", "project_id"),
        ("pattern_clusters", "theme_id"),
        ("pattern_trends", "pattern_id"),
    ],
)
def test_the_copys_served_views_give_the_warehouses_rows(
    planted_warehouse: Path, mart: str, spread: str
) -> None:
    """The copy keeps some marts as views of copied tables (SERVED_VIEWS), so a publish
    after a drop does not rewrite a whole mart whose every row a few shared values move:
    pattern_project_predictions over the per-pattern sums (int_pattern_project_cells) and
    each project's prior (int_project_priors); pattern_clusters over each pattern's
    assignment (int_patterns__clustered) and each description's group facts
    (int_pattern_texts__described); pattern_trends over the weekly sums
    (int_pattern_weeks__aggregated). Each view must give exactly the warehouse mart's
    rows, bit for bit, on a warehouse with several projects and themes."""
    copy = current(planted_warehouse)
    assert copy is not None
    assert f"marts.{mart}" in SERVED_VIEWS
    query = f"select * from marts.{mart}"
    with duckdb.connect(str(copy.database), read_only=True) as con:
        kind = con.execute(
            "select table_type from information_schema.tables "
            "where table_schema = 'marts' and table_name = ?",
            [mart],
        ).fetchone()
        served = sorted(map(repr, con.execute(query).fetchall()))
    with duckdb.connect(str(planted_warehouse), read_only=True) as con:
        rows = sorted(map(repr, con.execute(query).fetchall()))
        (n_spread,) = con.execute(f"select count(distinct {spread}) from marts.{mart}").fetchone()  # type: ignore[misc]
    assert kind == ("VIEW",)
    assert n_spread > 1
    assert len(served) > 100 and served == rows


def test_republishing_switches_atomically_and_keeps_only_recent_builds(
    warehouse_copy: Path,
) -> None:
    results = [publish(warehouse_copy) for _ in range(KEEP_BUILDS + 2)]
    assert current(warehouse_copy).build_id == results[-1].build_id  # type: ignore[union-attr]
    builds = sorted(p.name for p in serving_root(warehouse_copy).glob("build-*"))
    assert builds == [r.directory.name for r in results[-KEEP_BUILDS:]]
    assert not list(serving_root(warehouse_copy).glob(".*partial"))
    with Memory(warehouse_copy) as memory:
        assert memory.copy is not None and memory.copy.build_id == results[-1].build_id


def test_readers_answer_from_the_previous_build_while_the_warehouse_is_written(
    warehouse_copy: Path, tmp_path: Path, embedder: Embedder
) -> None:
    publish(warehouse_copy)
    with Memory(warehouse_copy, embedder=embedder) as memory:
        before = int(memory.sql("select count(*) as n from marts.dim_patterns")["n"][0])
    new = tmp_path / "new"
    new.mkdir()
    (new / "patterns.jsonl").write_text(
        json.dumps(
            {"pattern_id": "zz-new-pattern", "description": NEW_PATTERN, "pattern_type": "fix"}
        )
        + "\n"
    )
    ingest_paths([new], warehouse_copy, embedder=embedder)  # raw data changes, no build yet

    writer = _hold_write_lock(warehouse_copy)
    try:
        started = time.perf_counter()
        with Memory(warehouse_copy, embedder=embedder) as memory:
            similar = memory.find_similar(NEW_PATTERN, k=3)
            count = int(memory.sql("select count(*) as n from marts.dim_patterns")["n"][0])
        assert "zz-new-pattern" not in similar["pattern_id"].tolist()
        assert count == before
        cli = subprocess.run(
            [
                sys.executable,
                "-m",
                "engram.cli",
                "sql",
                "select count(*) as n from marts.dim_patterns",
                "--json",
                "--db",
                str(warehouse_copy),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert cli.returncode == 0, cli.stderr
        assert json.loads(cli.stdout) == [{"n": before}]
        assert time.perf_counter() - started < 100  # answered while the lock was held
        assert writer.poll() is None  # the writer still holds it
    finally:
        writer.kill()
        writer.wait()

    from engram.build import build

    build(warehouse_copy, capture=True)  # rebuild + republish: now the pattern is served
    with Memory(warehouse_copy, embedder=embedder) as memory:
        assert memory.find_similar(NEW_PATTERN, k=1)["pattern_id"].tolist() == ["zz-new-pattern"]


def test_locked_warehouse_without_serving_copy_is_a_clear_error(warehouse_copy: Path) -> None:
    assert current(warehouse_copy) is None
    writer = _hold_write_lock(warehouse_copy)
    try:
        with pytest.raises(QueryError, match="no serving copy has been published yet"):
            Memory(warehouse_copy)
    finally:
        writer.kill()
        writer.wait()


def test_missing_mart_says_run_engram_build(warehouse_copy: Path) -> None:
    con = duckdb.connect(str(warehouse_copy))
    con.execute("drop table if exists marts.file_cooccurrence")
    con.close()
    publish(warehouse_copy)
    with Memory(warehouse_copy) as memory, pytest.raises(MissingMart, match="engram build"):
        memory.files()


def test_report_reads_the_serving_copy(planted_warehouse: Path) -> None:
    from engram.cli.report import build_report

    sections = build_report(planted_warehouse, top=3)
    titles = [s.title for s in sections]
    assert titles[0] == "What is in the warehouse"
    counts = dict(sections[0].rows)
    assert counts["patterns"] == 300 and counts["usage events"] == 6000
    assert "serving copy" in (sections[0].note or "")


def test_context_evidence_keeps_each_task_texts_most_used_patterns(
    warehouse_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import engram.query.serving as serving_module

    monkeypatch.setattr(serving_module, "CONTEXT_EVIDENCE_CAP", 2)
    copy = publish(warehouse_copy)
    sql = """
        select context_hash, project_id, pattern_id, count(*) as n_events,
               sum(outcome_quality) as s
        from staging.stg_usage_events
        where context_hash is not null and outcome_quality is not null
        group by all
    """
    con = duckdb.connect(str(warehouse_copy), read_only=True)
    try:
        full = con.execute(sql).df()
    finally:
        con.close()
    con = duckdb.connect(str(copy.database), read_only=True)
    try:
        kept = con.execute("select * from serving.context_patterns").df()
    finally:
        con.close()
    # the cap is per task text and project (predict --project reads one project's rows)
    per = ["context_hash", "project_id"]
    assert (full.groupby(per).size() > 2).any(), "the cap must bind somewhere"
    assert kept.groupby(per).size().max() == 2
    assert set(kept["context_hash"]) == set(full["context_hash"])
    for (context_hash, project_id), rows in kept.groupby(per):
        mine = (full["context_hash"] == context_hash) & (full["project_id"] == project_id)
        counts = full[mine]["n_events"]
        # the two kept are the two most used there (ties broken by pattern_id)
        assert sorted(rows["n_events"], reverse=True) == sorted(counts, reverse=True)[:2]
        merged = rows.merge(
            full, on=["context_hash", "project_id", "pattern_id"], suffixes=("", "_all")
        )
        assert (merged["n_events"] == merged["n_events_all"]).all()
        assert np.allclose(merged["sum_quality"], merged["s"])


def _context_rows(database: Path, sql: str = "select * from serving.context_patterns") -> list:
    with duckdb.connect(str(database), read_only=True) as con:
        return sorted(con.execute(sql).fetchall())


def test_task_text_evidence_is_rewritten_for_the_task_texts_of_new_events_only(
    warehouse_copy: Path, tmp_path: Path, embedder: Embedder
) -> None:
    """serving.context_patterns is synced by the task texts of the events loaded since the
    last publish (engram.query.serving.sync_appended), and ends equal to its query over
    every event; events that appear at or before that point, or a merge, sync it whole."""
    from engram.merges import merge_patterns
    from engram.query.serving import context_patterns_query

    publish(warehouse_copy)
    with duckdb.connect(str(warehouse_copy), read_only=True) as con:
        known_context, n_texts = con.execute(
            "select min(context), count(distinct context_hash) from raw.usage_events"
        ).fetchone()  # type: ignore[misc]
        before = _context_rows(warehouse_copy, context_patterns_query("true"))
    assert n_texts > 4  # two touched texts stay under REWRITE_SHARE
    new = tmp_path / "new"
    new.mkdir()
    events = [
        {
            "event_id": f"zz-event-{i}",
            "pattern_id": "zz-new-pattern",
            "session_id": "zz-session",
            "timestamp": "2025-12-29T10:00:00Z",
            "outcome_quality": 0.25,
            "context": context,
            "project_id": "zz-project",
        }
        for i, context in enumerate([known_context, "a task text never seen before"])
    ]
    (new / "patterns.jsonl").write_text(
        json.dumps({"pattern_id": "zz-new-pattern", "description": NEW_PATTERN}) + "\n"
    )
    (new / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    ingest_paths([new], warehouse_copy, embedder=embedder)

    appended = publish(warehouse_copy)
    assert appended.table_changes["serving.context_patterns"] == "appended: 2 keys"
    want = _context_rows(warehouse_copy, context_patterns_query("true"))
    assert want != before  # the new events changed the evidence
    assert _context_rows(appended.database) == want
    assert publish(warehouse_copy).table_changes["serving.context_patterns"] == "unchanged"

    # a drop touching every task text (past REWRITE_SHARE): still only the appended
    # events' and the copy's (task text, project, pattern) triples are summed
    with duckdb.connect(str(warehouse_copy), read_only=True) as con:
        contexts = [
            row[0]
            for row in con.execute(
                "select distinct context from raw.usage_events where context is not null"
            ).fetchall()
        ]
    everywhere = tmp_path / "everywhere"
    everywhere.mkdir()
    (everywhere / "events.jsonl").write_text(
        "".join(
            json.dumps({**events[0], "event_id": f"zz-every-{i}", "context": context}) + "\n"
            for i, context in enumerate(contexts)
        )
    )
    ingest_paths([everywhere], warehouse_copy, embedder=embedder)
    wide = publish(warehouse_copy)
    assert wide.table_changes["serving.context_patterns"] == f"appended: {len(contexts)} keys"
    want = _context_rows(warehouse_copy, context_patterns_query("true"))
    assert _context_rows(wide.database) == want

    # an event loaded "in the past" (a clock set back, a row written by hand): no later
    # loaded_at shows it, the count up to the mark does
    with duckdb.connect(str(warehouse_copy)) as con:
        con.execute(
            "insert into raw.usage_events select * replace ('zz-late' as event_id, "
            "(select min(loaded_at) from raw.usage_events) as loaded_at) "
            "from raw.usage_events where event_id = 'zz-event-0'"
        )
    late = publish(warehouse_copy)
    assert late.table_changes["serving.context_patterns"] == "updated"
    want = _context_rows(warehouse_copy, context_patterns_query("true"))
    assert _context_rows(late.database) == want

    # a merge moves events to the kept pattern without loading any
    with duckdb.connect(str(warehouse_copy), read_only=True) as con:
        (drop,) = con.execute(
            "select pattern_id from raw.usage_events where context = ? "
            "and pattern_id <> 'zz-new-pattern' limit 1",
            [known_context],
        ).fetchone()  # type: ignore[misc]
    merge_patterns(warehouse_copy, "zz-new-pattern", [drop])
    merged = publish(warehouse_copy)
    assert merged.table_changes["serving.context_patterns"] == "updated"
    want = _context_rows(warehouse_copy, context_patterns_query("true"))
    assert _context_rows(merged.database) == want


def test_task_text_evidence_after_an_append_needs_only_the_kept_and_the_new_triples() -> None:
    """context_patterns_candidates: a (task text, project)'s CONTEXT_EVIDENCE_CAP most-used
    patterns after an append are found among its most-used before and its new events'
    patterns. Planted: a pattern just outside the cap overtakes the last one inside, a
    new pattern enters, another text is untouched; the rows from the candidates equal
    the query over every event."""
    from engram.query.serving import (
        CONTEXT_EVIDENCE_CAP,
        context_patterns_candidates,
        context_patterns_query,
    )

    cap = CONTEXT_EVIDENCE_CAP
    con = duckdb.connect()
    con.execute("create schema staging")
    con.execute(
        "create table staging.stg_usage_events (context_hash varchar, project_id varchar, "
        "pattern_id varchar, outcome_quality double, loaded_at timestamp)"
    )
    # text t1: pattern i has cap + 5 - i events (i = 0 .. cap + 4), so p{cap} .. p{cap+4}
    # are outside the cap; text t2 the same, never appended to
    for text in ("t1", "t2"):
        con.execute(
            "insert into staging.stg_usage_events select ?, 'proj', "
            "'p' || lpad(i::varchar, 4, '0'), 0.5, timestamp '2026-01-01' "
            "from (select i, unnest(range(? + 5 - i)) from range(?) as r(i))",
            [text, cap, cap + 5],
        )
    con.execute(f"create table copy as {context_patterns_query('true')}")
    outside = f"p{cap:04d}"  # the first pattern outside the cap: 5 events against 6
    assert con.execute("select count(*) from copy where pattern_id = ?", [outside]).fetchone() == (
        0,
    )
    # the append: the outsider gets 3 more events, a new pattern 50, both on text t1
    con.execute(
        "insert into staging.stg_usage_events select 't1', 'proj', ?, 1.0, "
        "timestamp '2026-02-01' from range(3)",
        [outside],
    )
    con.execute(
        "insert into staging.stg_usage_events select 't1', 'proj', 'new', 0.0, "
        "timestamp '2026-02-01' from range(50)"
    )
    appended = "loaded_at > timestamp '2026-01-15'"
    keys = f"select distinct context_hash from staging.stg_usage_events where {appended}"
    condition = context_patterns_candidates("copy", keys, appended)
    got = sorted(con.execute(context_patterns_query(condition)).fetchall())
    want = sorted(
        con.execute(
            f"select * from ({context_patterns_query('true')}) where context_hash = 't1'"
        ).fetchall()
    )
    assert got == want and len(got) == cap
    listed = {row[2] for row in got}
    assert outside in listed and "new" in listed
    # two of the old cap were pushed out (the lowest counts, ties to the larger id)
    before = {
        row[2] for row in con.execute("select * from copy where context_hash = 't1'").fetchall()
    }
    assert len(before - listed) == 2


def _table_rows(database: Path) -> dict[str, list[tuple]]:
    """Every table and view of a serving copy but serving.meta, as sorted rows (lists as
    tuples)."""
    con = duckdb.connect(str(database), read_only=True)
    try:
        names = [
            f"{schema}.{table}"
            for schema, table in con.execute(
                "select schema_name, table_name from duckdb_tables() union all "
                "select schema_name, view_name from duckdb_views() where not internal "
                "order by all"
            ).fetchall()
            if f"{schema}.{table}" != "serving.meta"
        ]
        return {
            name: sorted(map(repr, con.execute(f"select * from {name}").fetchall()))
            for name in names
        }  # type: ignore[misc]
    finally:
        con.close()


def _file_digests(directory: Path) -> dict[str, str]:
    import hashlib

    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.iterdir()}


def test_a_failing_index_fails_the_publish_and_leaves_the_previous_copy(
    warehouse_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The vector indexes are written on a thread beside the tables' syncs: its failure is
    the publish's, raised to the caller, and like any failed publish it leaves no partial
    folder and CURRENT on the previous build, which readers keep answering from."""
    import engram.query.index as index_module

    first = publish(warehouse_copy)

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full while writing the index")

    monkeypatch.setattr(index_module, "build_index", broken)
    with pytest.raises(OSError, match="disk full"):
        publish(warehouse_copy, incremental=False)
    assert current(warehouse_copy).build_id == first.build_id  # type: ignore[union-attr]
    assert not list(serving_root(warehouse_copy).glob(".*partial"))
    assert [p.name for p in serving_root(warehouse_copy).glob("build-*")] == [first.directory.name]
    with Memory(warehouse_copy) as memory:
        assert memory.copy is not None and memory.copy.build_id == first.build_id


@pytest.mark.parametrize("previous_copy", ["of an older format", "unreadable"])
def test_a_previous_copy_it_cannot_reuse_makes_a_full_publish(
    warehouse_copy: Path, previous_copy: str
) -> None:
    """publish reads the previous copy's format before copying it (so the vector indexes
    can start at once): a copy of another layout, or one it cannot open at all, is not
    copied; the publish starts from an empty file, as the first one does, and writes the
    same tables as a full publish."""
    from engram.query.serving import SERVING_FORMAT

    first = publish(warehouse_copy)
    if previous_copy == "unreadable":
        first.database.write_bytes(b"not a duckdb file" * 1000)
    else:
        with duckdb.connect(str(first.database)) as con:
            con.execute("update serving.meta set serving_format = ?", [SERVING_FORMAT - 1])
    again = publish(warehouse_copy)
    assert again.mode == "full"
    assert "copy previous" not in again.step_seconds
    assert all(how == "created" or how == "view" for how in again.table_changes.values())
    assert all(how.startswith("built") for how in again.index_changes.values())
    full = publish(warehouse_copy, incremental=False)
    assert _table_rows(again.database) == _table_rows(full.database)


def test_a_copy_prepared_during_the_build_is_the_one_the_publish_starts_from(
    warehouse_copy: Path,
) -> None:
    """`engram build` starts the incremental publish's file copy of the previous serving
    copy before dbt runs (prepare_publish), off the publish's critical path. The publish
    adopts it (its folder and build id) when it copied the copy the publish starts from;
    one copied from an older copy is not used; a discarded one leaves nothing behind; and
    a build through `engram build` ends with its prepared copy published, no partial
    folder left."""
    from engram.build import build
    from engram.query.serving import prepare_publish

    assert prepare_publish(warehouse_copy) is None  # no copy to start from yet
    first = publish(warehouse_copy, incremental=False)
    prepared = prepare_publish(warehouse_copy)
    assert prepared is not None and prepared.source == first.database
    adopted = publish(warehouse_copy, prepared=prepared)
    assert adopted.mode == "incremental" and adopted.build_id == prepared.build_id
    assert "copy previous, during the build" in adopted.step_seconds
    assert set(adopted.table_changes.values()) == {"unchanged"}
    rows = _table_rows(first.database)  # before KEEP_BUILDS prunes it
    assert _table_rows(adopted.database) == rows

    stale = prepare_publish(warehouse_copy)  # of `adopted`, which the next publish replaces
    assert stale is not None
    between = publish(warehouse_copy)
    after = publish(warehouse_copy, prepared=stale)
    assert stale.source == adopted.database != between.database
    assert after.mode == "incremental" and after.build_id == stale.build_id
    assert "copy previous, during the build" not in after.step_seconds  # copied anew
    assert _table_rows(after.database) == rows

    dropped = prepare_publish(warehouse_copy)
    assert dropped is not None and dropped.partial.exists()
    dropped.discard()
    assert not dropped.partial.exists()
    assert not list(serving_root(warehouse_copy).glob(".*partial"))

    build(warehouse_copy, capture=True)
    built = current(warehouse_copy)
    assert built is not None and built.build_id != after.build_id
    with duckdb.connect(str(built.database), read_only=True) as con:
        assert con.execute("select publish_mode from serving.meta").fetchone() == ("incremental",)
    assert not list(serving_root(warehouse_copy).glob(".*partial"))


def test_the_next_publish_removes_a_partial_folder_whose_writer_has_exited(
    warehouse_copy: Path,
) -> None:
    """A build killed while dbt ran leaves its prepared copy's folder (a copy of the whole
    serving file); the next publish removes it at once when its writer (OWNER_FILE: host,
    pid, start time) has exited, not only after PARTIAL_MAX_AGE_S. Kept, as not surely
    abandoned: one whose writer runs (this process), one without an owner file (an older
    engram's), one written on another host, one from another pid namespace (a container
    of the same hostname); a pid now used by another process (another start time) counts
    as exited."""
    from engram.query.serving import OWNER_FILE, _claim, _pid_namespace, _process_start

    root = serving_root(warehouse_copy)
    publish(warehouse_copy, incremental=False)
    sleeper = subprocess.Popen(["sleep", "30"])
    started = _process_start(sleeper.pid)
    sleeper.kill()
    sleeper.wait()
    assert started is not None and _process_start(sleeper.pid) is None
    host, namespace = socket.gethostname(), _pid_namespace()
    assert namespace.startswith("pid:[")
    folders = {}
    for name, owner in (
        ("dead", f"{host} {sleeper.pid} {started} {namespace}"),
        ("reused", f"{host} {os.getpid()} 1 {namespace}"),  # this pid, another start time
        ("live", None),
        ("unowned", ""),
        ("elsewhere", f"another-host-than-{host} {sleeper.pid} {started} {namespace}"),
        ("other-namespace", f"{host} {sleeper.pid} {started} pid:[1]"),
    ):
        folder = root / f".build-{name}.partial"
        folder.mkdir()
        (folder / "engram_serving.duckdb").write_bytes(b"half a copy")
        if owner is None:
            _claim(folder)
        elif owner:
            (folder / OWNER_FILE).write_text(owner)
        folders[name] = folder

    published = publish(warehouse_copy)

    gone = {name for name, folder in folders.items() if not folder.exists()}
    assert gone == {"dead", "reused"}
    assert set(published.removed) >= {folders["dead"], folders["reused"]}
    assert not (published.directory / OWNER_FILE).exists()  # not left in a published copy


_MAKE_PARTIALS = (
    "import sys\n"
    "from pathlib import Path\n"
    "from engram.query.serving import new_build_id, new_partial\n"
    "root = Path(sys.argv[1])\n"
    "new_partial(root, new_build_id())\n"
    "print('looping', flush=True)\n"
    "while True:\n"
    "    new_partial(root, new_build_id())\n"
)


def test_a_writer_killed_at_any_point_leaves_no_partial_folder_without_its_owner(
    tmp_path: Path,
) -> None:
    """A partial folder appears with its owner file already inside (new_partial), so a
    kill at any point leaves nothing that waits PARTIAL_MAX_AGE_S: a process making
    partial folders in a loop, killed 20 times at random moments, leaves only owned
    folders (the next _prune removes them all) and private folders with at most an
    unfinished owner file. When the owner was written after the folder's mkdir, every
    kill landed in between (CI's kill test once did)."""
    import random

    from engram.query.serving import CLAIM_PREFIX, OWNER_FILE, _prune

    root = tmp_path / "engram.serving"
    root.mkdir()
    rng = random.Random(20261206)
    for _ in range(20):
        child = subprocess.Popen(
            [sys.executable, "-c", _MAKE_PARTIALS, str(root)], stdout=subprocess.PIPE
        )
        # killed while it loops (a slow start cannot use up the wait)
        assert child.stdout is not None and child.stdout.readline() == b"looping\n"
        time.sleep(rng.uniform(0.0, 0.01))
        child.kill()
        child.wait()
        child.stdout.close()
    folders = list(root.glob(".build-*.partial"))
    assert len(folders) >= 20
    assert [folder for folder in folders if not (folder / OWNER_FILE).exists()] == []

    removed = _prune(root, keep=root / "build-none")

    assert set(removed) >= set(folders)
    left = list(root.iterdir())
    assert all(path.name.startswith(CLAIM_PREFIX) for path in left), left
    # a kill before the owner file was whole leaves at most that file (bytes), for the hour rule
    assert {inside.name for path in left for inside in path.iterdir()} <= {OWNER_FILE}


# the tables a refresh rewrites per key, stamping what it writes: (table, key)
STAMPED_TABLES = {
    "intermediate.int_pattern_texts__neighbors": "description_hash",
    "marts.pattern_predictions": "pattern_id",
    # the SQL models' stamps (macros/write_stamp.sql), which the copy's digests read
    "intermediate.int_pattern_weeks__aggregated": "pattern_id",
    "intermediate.int_pattern_context_weeks__aggregated": "pattern_id",
}


def test_incremental_publish_writes_only_what_changed_and_equals_a_full_publish(
    warehouse_copy: Path, tmp_path: Path, embedder: Embedder
) -> None:
    from engram.build import build
    from engram.query.index import open_index

    publish(warehouse_copy, incremental=False)
    unchanged = publish(warehouse_copy)  # nothing changed: every table kept, indexes linked
    assert unchanged.mode == "incremental"
    assert set(unchanged.table_changes.values()) == {"unchanged"}
    assert all(v.startswith("linked") for v in unchanged.index_changes.values())

    new = tmp_path / "new"
    new.mkdir()
    pattern = {"pattern_id": "zz-new-pattern", "description": NEW_PATTERN, "pattern_type": "fix"}
    event = {
        "event_id": "zz-new-event",
        "pattern_id": "zz-new-pattern",
        "session_id": "zz-session",
        "timestamp": "2025-12-29T10:00:00Z",
        "outcome_quality": 0.9,
        "files_involved": ["src/zebra.py"],
        "tools_used": ["pytest"],
        "context": "make the zebra scheduler's cache deterministic",
        "project_id": "zz-project",
    }
    (new / "patterns.jsonl").write_text(json.dumps(pattern) + "\n")
    (new / "events.jsonl").write_text(json.dumps(event) + "\n")
    with duckdb.connect(str(warehouse_copy), read_only=True) as con:
        stamps_before = {
            mart: con.execute(f"select max(written_at) from {mart}").fetchone()[0]
            for mart in STAMPED_TABLES
        }
    ingest_paths([new], warehouse_copy, embedder=embedder)
    build(warehouse_copy, capture=True, publish=False)

    before = _file_digests(unchanged.directory)
    updated = publish(warehouse_copy)
    # the copy readers had open was never written (hard-linked index files included)
    assert _file_digests(unchanged.directory) == before
    full = publish(warehouse_copy, incremental=False)
    assert updated.mode == "incremental" and full.mode == "full"
    # dim_patterns: only the new pattern's row was read and written (its vectors unhashed)
    assert updated.table_changes["marts.dim_patterns"] == "scoped: 1 keys"
    # every table, index and the file copy timed (what bench.refresh reports)
    assert set(updated.step_seconds) == {
        *updated.table_changes,
        "copy previous",
        "index patterns",
        "index contexts",
    } - {name for name, how in updated.table_changes.items() if how == "dropped"}
    assert all(seconds >= 0 for seconds in updated.step_seconds.values())
    # the new pattern's weekly sums, and no other pattern's, were written (sync_scoped):
    # pattern_trends is the copy's view of them
    assert updated.table_changes["intermediate.int_pattern_weeks__aggregated"] == "scoped: 1 keys"
    assert updated.table_changes["marts.pattern_trends"] == "unchanged"
    # pattern_project_predictions is a view of the per-pattern cells (the new pattern's
    # written) and the project priors (a few rows): no row of the mart itself is written
    assert updated.table_changes["intermediate.int_pattern_project_cells"] == "scoped: 1 keys"
    assert updated.table_changes["marts.pattern_project_predictions"] == "unchanged"
    # pattern_clusters is a view of each pattern's group and theme (the new pattern's row
    # appended, no other written) and the per-description group facts
    assert updated.table_changes["intermediate.int_patterns__clustered"] == "updated"
    assert updated.table_changes["marts.pattern_clusters"] == "unchanged"
    # pattern_alerts is a view of the stored findings and what an append moves (the
    # newest event, the replacements' numbers), a few rows per theme: no alert is written
    assert updated.table_changes["marts.pattern_alerts"] == "unchanged"
    # the tables a refresh rewrites per key: the keys it rewrote (their rows stamped by
    # its write, written_at), and no other, were written; the new pattern has no similar
    # pattern, so the one list written is its own new description's (itself alone), and
    # pattern_similar_pairs, a view of the lists, writes nothing
    with duckdb.connect(str(warehouse_copy), read_only=True) as con:
        rewritten = {
            table: con.execute(
                f"select count(distinct {key}) from {table} where written_at > ?",
                [stamps_before[table]],
            ).fetchone()[0]
            for table, key in STAMPED_TABLES.items()
        }
    assert rewritten == {
        "intermediate.int_pattern_texts__neighbors": 1,
        "marts.pattern_predictions": 1,
        "intermediate.int_pattern_weeks__aggregated": 1,
        "intermediate.int_pattern_context_weeks__aggregated": 1,
    }
    assert updated.table_changes["intermediate.int_pattern_texts__neighbors"] == "scoped: 1 keys"
    assert updated.table_changes["marts.pattern_similar_pairs"] == "unchanged"
    assert updated.table_changes["marts.pattern_predictions"] == "scoped: 1 keys"
    # predict's evidence per task text: the new event's task text alone
    assert updated.table_changes["serving.context_patterns"] == "appended: 1 keys"
    assert "unchanged" in updated.table_changes.values()  # not everything was rewritten
    assert updated.index_changes["patterns"].startswith("updated:")
    assert ", 1 added, 0 removed" in updated.index_changes["patterns"]
    assert ", 1 added, 0 removed" in updated.index_changes["contexts"]
    # the same answers as a copy written from scratch, table by table, row by row
    assert _table_rows(updated.database) == _table_rows(full.database)
    # the updated index holds the same rows and vectors, and finds the new pattern
    for name in ("patterns", "contexts"):
        got = open_index(updated.directory, name, expected_fingerprint=full_fp(full, name))
        want = open_index(full.directory, name, expected_fingerprint=full_fp(full, name))
        assert got.ann is not None and len(got) == len(want)
        assert np.array_equal(np.sort(got.ids), np.sort(want.ids))
        got_rows = np.asarray(got.matrix)[np.argsort(got.ids)]
        want_rows = np.asarray(want.matrix)[np.argsort(want.ids)]
        assert np.array_equal(got_rows, want_rows)
    with Memory(warehouse_copy, embedder=embedder, search_mode="ann") as memory:
        assert memory.find_similar(NEW_PATTERN, k=1)["pattern_id"].tolist() == ["zz-new-pattern"]


def test_a_relabelled_group_updates_only_the_copys_label_column(warehouse_copy: Path) -> None:
    """A group's label is its most central description, which one new text can move for
    every member. The copy's dim_patterns rows are not rewritten for it (the scoped sync's
    digests leave the label out): the label column alone is updated, for exactly the
    members whose description's label moved, and the copy ends equal to the warehouse."""
    publish(warehouse_copy, incremental=False)
    described = "intermediate.int_pattern_texts__described"
    with duckdb.connect(str(warehouse_copy)) as con:
        (label, n_members) = con.execute(
            "select any_value(cluster_label), count(*) from marts.dim_patterns "
            "where cluster_id = (select cluster_id from marts.dim_patterns "
            "group by cluster_id order by count(*) desc, cluster_id limit 1)"
        ).fetchone()  # type: ignore[misc]
        assert n_members > 1
        con.execute(
            f"update {described} set cluster_label = 'a new central text' where cluster_label = ?",
            [label],
        )
    updated = publish(warehouse_copy)
    assert updated.table_changes["marts.dim_patterns"] == "unchanged"
    assert updated.table_changes[LABELS_STEP] == f"relabelled: {n_members} patterns"
    assert updated.table_changes[described] in ("updated", "rewritten")
    query = "select * from marts.dim_patterns order by pattern_id"
    with duckdb.connect(str(updated.database), read_only=True) as con:
        served = con.execute(query).fetchall()
    with duckdb.connect(str(warehouse_copy), read_only=True) as con:
        assert served == con.execute(query).fetchall()
    assert sum(row[11] == "a new central text" for row in served) == n_members
    # and the next publish has nothing left to relabel
    again = publish(warehouse_copy)
    assert again.table_changes[LABELS_STEP] == "unchanged"


def test_weekly_sums_from_before_their_stamps_are_published_then_stamped_by_the_next_build(
    warehouse_copy: Path, tmp_path: Path, embedder: Embedder
) -> None:
    """The two weekly-sum tables are stamped per written row (written_at,
    macros/write_stamp.sql), which the copy's digests read. A warehouse built before the
    column: a publish syncs what they feed whole (the stamps' digest query does not bind),
    the next build adds the column (old rows null, the rewritten rows stamped, the stamps
    growing), and the publish after it ends equal to a full publish."""
    from engram.build import build

    weekly = (
        "intermediate.int_pattern_weeks__aggregated",
        "intermediate.int_pattern_context_weeks__aggregated",
    )
    with duckdb.connect(str(warehouse_copy)) as con:
        for table in weekly:
            con.execute(f"alter table {table} drop column written_at")
        (pattern_id,) = con.execute("select min(pattern_id) from raw.patterns").fetchone()  # type: ignore[misc]
    before = publish(warehouse_copy)
    assert before.table_changes["intermediate.int_pattern_weeks__aggregated"] == "created"
    assert before.table_changes["intermediate.int_pattern_project_cells"] == "created"
    again = publish(warehouse_copy)  # no stamps to read: every row compared, none changed
    assert again.table_changes["intermediate.int_pattern_project_cells"] == "unchanged"

    new = tmp_path / "new"
    new.mkdir()
    event = {
        "event_id": "zz-late-event",
        "pattern_id": pattern_id,
        "session_id": "zz-session",
        "timestamp": "2025-12-29T10:00:00Z",
        "outcome_quality": 0.9,
        "context": "make the zebra scheduler's cache deterministic",
    }
    (new / "events.jsonl").write_text(json.dumps(event) + "\n")
    ingest_paths([new], warehouse_copy, embedder=embedder)
    build(warehouse_copy, capture=True, publish=False)
    with duckdb.connect(str(warehouse_copy), read_only=True) as con:
        for table in weekly:
            stamped, unstamped = con.execute(
                f"select count(distinct pattern_id) filter (where written_at is not null), "
                f"count(*) filter (where written_at is null) from {table}"
            ).fetchone()  # type: ignore[misc]
            assert stamped == 1 and unstamped > 0, table  # the late event's pattern alone
    updated = publish(warehouse_copy)
    full = publish(warehouse_copy, incremental=False)
    assert _table_rows(updated.database) == _table_rows(full.database)


def full_fp(copy: object, name: str) -> str:
    con = duckdb.connect(str(copy.database), read_only=True)  # type: ignore[attr-defined]
    try:
        return con.execute(f"select {name}_fingerprint from serving.meta").fetchone()[0]  # type: ignore[index]
    finally:
        con.close()


@pytest.mark.parametrize("source", ["source_view", "main.base"])
def test_sync_table_keeps_updates_or_rewrites_and_always_ends_equal(
    tmp_path: Path, source: str
) -> None:
    """sync_table reads a view once (it re-runs its query per read), a table by its row
    hashes and then only the rows to append, and decides from the row hashes: equal count
    and hash sums -> unchanged, a few rows differ -> only those deleted/appended, most
    differ or duplicate rows among changes -> rewritten; the copy always ends with
    exactly the source's rows."""
    from engram.query.serving import _ALIAS, sync_table

    con = duckdb.connect(str(tmp_path / "source.duckdb"))
    con.execute(f"attach '{tmp_path / 'copy.duckdb'}' as {_ALIAS}")
    con.execute(f"create schema {_ALIAS}.marts")
    con.execute(
        "create table base as select i as k, i * 0.5 as v, 'x' || i as s from range(1000) t(i)"
    )
    con.execute("create view source_view as select k, v * 2 as v, s from base")
    target = (source, "k", None)

    def rows(relation: str) -> list[tuple]:
        return con.execute(f"select * from {relation} order by all").fetchall()

    assert sync_table(con, "marts.t", target) == "created"
    assert sync_table(con, "marts.t", target) == "unchanged"
    con.execute("update base set v = v + 1 where k < 10")  # 1% of the rows
    con.execute("insert into base values (5000, 1.0, 'new')")
    assert sync_table(con, "marts.t", target) == "updated"
    assert rows(f"{_ALIAS}.marts.t") == rows(source)
    assert sync_table(con, "marts.t", target) == "unchanged"
    con.execute("update base set v = v + 1 where k < 900")  # most rows
    assert sync_table(con, "marts.t", target) == "rewritten"
    assert rows(f"{_ALIAS}.marts.t") == rows(source)
    con.execute("insert into base select * from base where k = 1")  # a duplicate row
    assert sync_table(con, "marts.t", target) == "rewritten"
    assert rows(f"{_ALIAS}.marts.t") == rows(source)
    # the same rows, duplicate included: nothing to write (the distinct count is taken
    # only where rows would be deleted and appended one by one)
    assert sync_table(con, "marts.t", target) == "unchanged"
    con.execute("delete from base where k >= 500")
    assert sync_table(con, "marts.t", target) in ("updated", "rewritten")
    assert rows(f"{_ALIAS}.marts.t") == rows(source)
    con.close()


def scoped_source_and_copy(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    """A source warehouse with schema marts and, attached as the copy, an empty file with
    the schemas sync_scoped writes to."""
    from engram.query.serving import _ALIAS

    con = duckdb.connect(str(tmp_path / "source.duckdb"))
    con.execute(f"attach '{tmp_path / 'copy.duckdb'}' as {_ALIAS}")
    for schema in ("marts", "serving"):
        con.execute(f"create schema {_ALIAS}.{schema}")
    con.execute("create schema marts")
    return con


def test_a_scoped_table_rewrites_only_the_keys_whose_input_changed(tmp_path: Path) -> None:
    """sync_scoped (pattern_trends, dim_patterns in a publish): a view whose rows per key
    come from that key's input rows is synced by comparing per-key digests of the input
    with those stored at the previous sync. Changed, new and gone keys are rewritten and
    nothing else, read through the table macro when there is one; a changed view
    definition or setting, or a copy without digests, falls back to the whole-table sync;
    the copy always ends with exactly the view's rows, its digests with the input's."""
    from engram.query.serving import _ALIAS, _DEFINITIONS, _DIGESTS, Scope, sync_scoped

    con = scoped_source_and_copy(tmp_path)
    con.execute(
        "create table weekly as select 'p' || (i % 100) as pattern_id, i // 100 as week, "
        "i * 0.25 as total from range(1000) t(i)"
    )
    # a setting every row depends on, as dim_patterns' vectors on the active model
    con.execute("create table setting as select 1.0 as offset_by")
    # per key: a running sum over its own rows (as pattern_trends' moving window)
    rows_sql = (
        "select pattern_id, week, sum(total) over (partition by pattern_id order by week) "
        "+ (select offset_by from setting) as running from weekly"
    )
    con.execute(f"create view marts.trends as {rows_sql}")
    target = ("marts.trends", "pattern_id, week", None)
    scope = Scope(
        key="pattern_id",
        input="weekly",
        needs=("weekly",),
        views=("marts.trends",),
        settings="select * from setting",
        rows_for="marts.trends_for",
    )
    read_through_macro: list[bool] = []

    def sync() -> str:
        read_through_macro.append(
            con.execute(
                "select count(*) from duckdb_functions() where function_name = 'trends_for'"
            ).fetchone()[0]  # type: ignore[index]
            > 0
        )
        return sync_scoped(con, "marts.trends", target, scope)

    def rows(relation: str) -> list[tuple]:
        return con.execute(f"select * from {relation} order by all").fetchall()

    def digests_match_input() -> bool:
        stored = con.execute(f"select key from {_ALIAS}.{_DIGESTS} order by key").fetchall()
        return stored == con.execute("select distinct pattern_id from weekly order by 1").fetchall()

    assert sync() == "created"  # no digests yet: the whole-table sync
    assert sync() == "unchanged"
    con.execute("update weekly set total = total + 1 where pattern_id = 'p7' and week = 3")
    con.execute("insert into weekly values ('p-new', 0, 1.0), ('p-new', 1, 2.0)")
    con.execute("delete from weekly where pattern_id = 'p9'")  # a key gone (a merge)
    assert sync() == "scoped: 3 keys"
    assert rows(f"{_ALIAS}.marts.trends") == rows("marts.trends")
    assert digests_match_input()
    assert sync() == "unchanged"  # only the changed digests were written, and rightly
    # the same through a table macro computing only the given keys' rows
    con.execute(
        "create macro marts.trends_for(keys) as table select * from ("
        + rows_sql.replace("from weekly", "from weekly where pattern_id in (select unnest(keys))")
        + ")"
    )
    # the macro is part of the definition: the whole table is compared (and found equal)
    assert sync() == "unchanged"
    definition = con.execute(f"select definition from {_ALIAS}.{_DEFINITIONS}").fetchone()
    assert definition is not None and "unnest(keys)" in definition[0]
    con.execute("update weekly set total = total * 2 where pattern_id in ('p1', 'p2')")
    assert sync() == "scoped: 2 keys"
    assert read_through_macro[-1]
    assert rows(f"{_ALIAS}.marts.trends") == rows("marts.trends")
    # a setting changed: no key's input did, yet every row did
    con.execute("update setting set offset_by = 2.0")
    assert sync() == "rewritten"
    assert rows(f"{_ALIAS}.marts.trends") == rows("marts.trends")
    # another definition: digests of the input cannot tell what changed, so every row is
    con.execute(
        "create or replace view marts.trends as select pattern_id, week, sum(total) over "
        "(partition by pattern_id order by week) + 1 as running from weekly"
    )
    assert sync() == "rewritten"
    assert rows(f"{_ALIAS}.marts.trends") == rows("marts.trends")
    assert sync() == "unchanged"
    assert digests_match_input()
    con.close()


def test_a_stamped_table_is_synced_by_its_stamps_and_a_new_column_syncs_it_whole(
    tmp_path: Path,
) -> None:
    """The stamped marts' scope (SCOPED["marts.pattern_predictions"], as a publish uses
    it): a pattern whose rows were rewritten with a new stamp, a new one and one deleted
    are synced, and no other; a value changed without a new stamp (which no build does)
    is not seen, which is what the scope trusts the stamps for; a column added to the
    table, which changes no stamp, syncs it whole. The copy ends equal to the source."""
    from engram.query.serving import _ALIAS, SCOPED, sync_scoped

    con = scoped_source_and_copy(tmp_path)
    mart = "marts.pattern_predictions"
    con.execute(
        f"create table {mart} as select 'p' || (i % 50) as pattern_id, i // 50 as cell, "
        "i * 0.5 as predicted_success, timestamp '2026-01-01 00:00:00' as written_at "
        "from range(500) t(i)"
    )
    target = (mart, "pattern_id, cell", None)
    scope = SCOPED[mart]

    def rows(relation: str) -> list[tuple]:
        return con.execute(f"select * from {relation} order by all").fetchall()

    assert sync_scoped(con, mart, target, scope) == "created"
    assert sync_scoped(con, mart, target, scope) == "unchanged"
    write = "timestamp '2026-01-02 00:00:00'"
    con.execute(  # p3 rewritten whole by a later write, with a new row
        f"update {mart} set predicted_success = -1, written_at = {write} where pattern_id = 'p3'"
    )
    con.execute(f"insert into {mart} values ('p3', 99, 0.0, {write}), ('p-new', 0, 1.0, {write})")
    con.execute(f"delete from {mart} where pattern_id = 'p9'")  # merged away
    assert sync_scoped(con, mart, target, scope) == "scoped: 3 keys"
    assert rows(f"{_ALIAS}.{mart}") == rows(mart)
    con.execute(f"update {mart} set predicted_success = 7 where pattern_id = 'p4'")
    assert sync_scoped(con, mart, target, scope) == "unchanged"  # trusted: no new stamp
    assert rows(f"{_ALIAS}.{mart}") != rows(mart)
    con.execute(f"alter table {mart} add column ci_low double default 0.0")
    assert sync_scoped(con, mart, target, scope) == "rewritten"
    assert rows(f"{_ALIAS}.{mart}") == rows(mart)
    assert sync_scoped(con, mart, target, scope) == "unchanged"
    # a warehouse from before the stamps: synced whole (its input reads written_at), and
    # whole once more when the stamps arrive; scoped from then on
    con.execute(f"alter table {mart} drop column written_at")
    con.execute(f"update {mart} set predicted_success = 8 where pattern_id = 'p5'")
    assert sync_scoped(con, mart, target, scope) == "rewritten"
    assert rows(f"{_ALIAS}.{mart}") == rows(mart)
    con.execute(f"alter table {mart} add column written_at timestamp default {write}")
    assert sync_scoped(con, mart, target, scope) == "rewritten"
    assert rows(f"{_ALIAS}.{mart}") == rows(mart)
    con.execute(
        f"update {mart} set predicted_success = 9, written_at = written_at + interval 1 day "
        "where pattern_id in ('p1', 'p2')"
    )
    assert sync_scoped(con, mart, target, scope) == "scoped: 2 keys"
    assert rows(f"{_ALIAS}.{mart}") == rows(mart)
    con.close()


def test_a_pattern_vector_is_identified_by_its_description_under_the_active_model(
    tmp_path: Path,
) -> None:
    """The patterns index tells a changed vector by the hash of the description it is the
    cached embedding of, under the active model (hashing 1M vectors took 2.6 s of a
    refresh's index update), and names that model in its hash kind, so that another model,
    whose vectors differ for the same text, gives another kind and the index is built
    again (update_index refuses a kind it was not built with: test_query). A warehouse
    without exactly one active model hashes the vectors themselves. A new description is
    a new identity; a vector whose description stays is the same one."""
    from engram.query.serving import _hash_kind, _vector_hashes, _vector_identity

    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("create schema staging")
    con.execute("create schema marts")
    con.execute(
        "create table marts.dim_patterns as select 'p' || i as pattern_id, "
        "'text ' || (i % 3) as description, [i, 1]::float[2] as embedding from range(6) t(i)"
    )
    assert _vector_identity(con, "description") == ("hash(embedding)", _hash_kind())
    con.execute(
        "create table staging.stg_embedding_model as select 'minilm:torch' as embedding_model"
    )
    identity, kind = _vector_identity(con, "description")
    assert identity == "hash(description)"
    assert kind == f"{_hash_kind()};description;minilm:torch"
    con.execute("update staging.stg_embedding_model set embedding_model = 'minilm:onnx-int8'")
    assert _vector_identity(con, "description")[1] != kind  # another model: another kind
    assert _vector_identity(con, None) == ("hash(embedding)", _hash_kind())
    ids, before = _vector_hashes(con, "marts.dim_patterns", "pattern_id", identity)
    con.execute("update marts.dim_patterns set embedding = [9, 9] where pattern_id = 'p0'")
    con.execute("update marts.dim_patterns set description = 'new text' where pattern_id = 'p1'")
    _, after = _vector_hashes(con, "marts.dim_patterns", "pattern_id", identity)
    changed = {str(i) for i, a, b in zip(ids, before, after, strict=True) if a != b}
    assert changed == {"p1"}
    con.execute("insert into staging.stg_embedding_model values ('another')")
    assert _vector_identity(con, "description") == ("hash(embedding)", _hash_kind())
    con.close()


def test_a_scoped_view_whose_types_changed_upstream_is_synced_whole(tmp_path: Path) -> None:
    """A scoped view whose own SQL and input are unchanged but which reads a view whose
    output type changed (a cast upstream): no key's input digest moved, yet every row's
    value type did. The view's columns are part of the definition, so the copy is synced
    whole and ends with the new types and the view's rows."""
    from engram.query.serving import _ALIAS, Scope, sync_scoped

    con = scoped_source_and_copy(tmp_path)
    con.execute(
        "create table weekly as select 'p' || (i % 20) as pattern_id, i // 20 as week, "
        "i * 0.25 as total from range(200) t(i)"
    )
    con.execute(
        "create view typed as select pattern_id, week, total::decimal(9, 2) as total from weekly"
    )
    con.execute("create view marts.trends as select pattern_id, week, total from typed")
    target = ("marts.trends", "pattern_id, week", None)
    scope = Scope(key="pattern_id", input="weekly", needs=("weekly",), views=("marts.trends",))

    def types(relation: str) -> list[str]:
        return [row[1] for row in con.execute(f"describe select * from {relation}").fetchall()]

    assert sync_scoped(con, "marts.trends", target, scope) == "created"
    assert sync_scoped(con, "marts.trends", target, scope) == "unchanged"
    assert types(f"{_ALIAS}.marts.trends")[2] == "DECIMAL(9,2)"
    con.execute(
        "create or replace view typed as "
        "select pattern_id, week, total::double as total from weekly"
    )
    assert sync_scoped(con, "marts.trends", target, scope) == "rewritten"
    assert types(f"{_ALIAS}.marts.trends") == types("marts.trends")
    assert types(f"{_ALIAS}.marts.trends")[2] == "DOUBLE"
    assert sync_scoped(con, "marts.trends", target, scope) == "unchanged"
    con.close()


def test_a_scoped_table_with_one_row_per_key_is_updated_in_place(tmp_path: Path) -> None:
    """Scope(unique=True) (dim_patterns): changed keys are updated where their values
    differ instead of deleted and inserted (a deleted row makes DuckDB's checkpoint
    rewrite its row group's every column, the 1.5 GB of vectors included), new keys
    inserted, gone keys deleted; the copy ends equal to the view, and an updated row
    keeps its place (its rowid), which a delete + insert would not."""
    from engram.query.serving import _ALIAS, Scope, sync_scoped

    con = scoped_source_and_copy(tmp_path)
    con.execute(
        "create table profile as select 'p' || i as pattern_id, i as usage_count, "
        "'label ' || (i % 7) as label, [i, 1, 0, 0]::float[4] as vector from range(200) t(i)"
    )
    con.execute("create view marts.dim as select * from profile")
    con.execute(
        "create macro marts.dim_for(keys) as table "
        "select * from profile where pattern_id in (select unnest(keys))"
    )
    target = ("marts.dim", "pattern_id", None)
    scope = Scope(
        key="pattern_id",
        input="profile",
        needs=("profile",),
        views=("marts.dim",),
        rows_for="marts.dim_for",
        unique=True,
    )

    def rows(relation: str) -> list[tuple]:
        return con.execute(f"select * from {relation} order by all").fetchall()

    def rowid(key: str) -> int:
        return con.execute(
            f"select rowid from {_ALIAS}.marts.dim where pattern_id = ?", [key]
        ).fetchone()[0]  # type: ignore[index]

    assert sync_scoped(con, "marts.dim", target, scope) == "created"
    before = {key: rowid(key) for key in ("p7", "p8", "p30")}
    con.execute("update profile set usage_count = usage_count + 1 where pattern_id = 'p7'")
    con.execute("update profile set label = 'renamed' where pattern_id = 'p8'")
    # a new vector (a new description): DuckDB updates an array column by delete + insert,
    # so this row moves; rare, and the copy is still right
    con.execute("update profile set vector = [9, 9, 9, 9] where pattern_id = 'p10'")
    con.execute("insert into profile values ('p-new', 1, 'new', [0, 0, 0, 1])")
    con.execute("delete from profile where pattern_id = 'p9'")
    assert sync_scoped(con, "marts.dim", target, scope) == "scoped: 5 keys"
    assert rows(f"{_ALIAS}.marts.dim") == rows("marts.dim")
    assert {key: rowid(key) for key in ("p7", "p8", "p30")} == before
    assert sync_scoped(con, "marts.dim", target, scope) == "unchanged"
    con.close()


def test_a_column_that_follows_another_is_updated_where_that_one_or_its_nullness_differs(
    tmp_path: Path,
) -> None:
    """Scope.follows (dim_patterns' vector follows its description): the vector column is
    compared by the description and by whether it is null, never by its values, which
    made DuckDB read the copy's whole vector column. A new description brings its new
    vector, a vector that arrives for an unchanged description (the cache caught up) or
    leaves is written, and a changed count leaves the row's vector, and place, alone."""
    from engram.query.serving import _ALIAS, Scope, sync_scoped

    con = scoped_source_and_copy(tmp_path)
    con.execute(
        "create table profile as select 'p' || i as pattern_id, i as usage_count, "
        "'text ' || i as description, "
        "case when i <> 5 then [i, 1, 0, 0]::float[4] end as vector from range(50) t(i)"
    )
    con.execute("create view marts.dim as select * from profile")
    target = ("marts.dim", "pattern_id", None)
    scope = Scope(
        key="pattern_id",
        input="profile",
        needs=("profile",),
        views=("marts.dim",),
        unique=True,
        follows=(("vector", "description"),),
    )

    def rows(relation: str) -> list[tuple]:
        return con.execute(f"select * from {relation} order by all").fetchall()

    assert sync_scoped(con, "marts.dim", target, scope) == "created"
    (kept_place,) = con.execute(
        f"select rowid from {_ALIAS}.marts.dim where pattern_id = 'p7'"
    ).fetchone()  # type: ignore[misc]
    con.execute("update profile set usage_count = 99 where pattern_id = 'p7'")
    con.execute(
        "update profile set description = 'new text', vector = [9, 9, 9, 9] where pattern_id = 'p8'"
    )
    con.execute("update profile set vector = [5, 5, 5, 5] where pattern_id = 'p5'")  # arrived
    con.execute("update profile set vector = null where pattern_id = 'p6'")  # left
    assert sync_scoped(con, "marts.dim", target, scope) == "scoped: 4 keys"
    assert rows(f"{_ALIAS}.marts.dim") == rows("marts.dim")
    assert con.execute(
        f"select rowid from {_ALIAS}.marts.dim where pattern_id = 'p7'"
    ).fetchone() == (kept_place,)
    con.close()
