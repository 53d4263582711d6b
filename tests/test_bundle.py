"""Moving memory: `engram export` writes a bundle, `engram import` loads it elsewhere.

Checked against independent truth: the round trip of the real flask-history sample must
give the same marts as the warehouse it came from (every mart table, every value); the
two-project filter against the planted project of each event; conflicts against the
rows the target held before; "nothing re-embedded" by making the model raise."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest

from engram.build import build
from engram.cli.main import main
from engram.merges import merge_patterns
from engram.numeric.incremental import BOOKKEEPING
from ingest.bundle import (
    EMBEDDINGS,
    EVENTS,
    MANIFEST,
    PATTERNS,
    SUPERSESSIONS,
    BundleError,
    export_bundle,
    import_bundle,
)
from ingest.embedder import Embedder
from ingest.loader import ingest_paths
from ingest.warehouse import CHECKOUT_ROOT

RAW_DATA = ("patterns", "usage_events", "pattern_supersessions", "embeddings")


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def two_projects(folder: Path) -> Path:
    """Patterns p0..p5; alpha's events use p0..p3, beta's p2..p5 (p2, p3 shared)."""
    patterns = [
        {"pattern_id": f"p{i}", "description": f"approach number {i}: fix the bug by step {i}"}
        for i in range(6)
    ]
    events = []
    for n in range(40):
        project = "alpha" if n % 2 == 0 else "beta"
        first = 0 if project == "alpha" else 2
        events.append(
            {
                "event_id": f"e{n}",
                "pattern_id": f"p{first + (n // 2) % 4}",
                "session_id": f"s{n // 4}",
                "timestamp": f"2024-01-{1 + n % 28:02d}T10:00:00Z",
                "outcome_quality": round((n % 10) / 10, 1),
                "files_involved": [f"src/{project}_{n % 3}.py"],
                "tools_used": ["pytest"],
                "context": f"task {n % 7} in {project}",
                "project_id": project,
            }
        )
    write_jsonl(folder / "patterns.jsonl", patterns)
    write_jsonl(folder / "events.jsonl", events)
    return folder


@pytest.fixture(scope="module")
def two_project_db(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Path:
    folder = two_projects(tmp_path_factory.mktemp("two_projects_data"))
    db = tmp_path_factory.mktemp("two_projects") / "engram.duckdb"
    ingest_paths([folder], db, embedder=embedder)
    return db


def counts(db: Path) -> dict[str, int]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {t: con.execute(f"select count(*) from raw.{t}").fetchone()[0] for t in RAW_DATA}  # type: ignore[index]
    finally:
        con.close()


def rows(db: Path, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


class _NoModel:
    """A stand-in for Embedder.encode that fails the test if any text is embedded."""

    def __call__(self, *_args: object, **_kwargs: object) -> None:
        raise AssertionError("the embedding model was invoked")


# --------------------------------------------------------------------------- round trip


def mart_tables(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    return con.execute(
        """
        select table_schema, table_name from information_schema.tables
        where table_schema like '%marts' and table_type in ('BASE TABLE', 'VIEW')
        order by all
        """
    ).fetchall()


def close_enough(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-9
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(close_enough(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close_enough(a[k], b[k]) for k in a)
    return bool(a == b)


def table_rows(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> list[tuple[Any, ...]]:
    """The table's rows in a canonical order (every column but BOOKKEEPING, rounded floats
    first, so rows that differ in the 15th digit still pair up)."""
    columns = [
        (name, dtype)
        for name, dtype in con.execute(
            "select column_name, data_type from information_schema.columns"
            " where table_schema = ? and table_name = ? order by ordinal_position",
            [schema, table],
        ).fetchall()
        if name not in BOOKKEEPING
    ]
    listed = ", ".join(f'"{name}"' for name, _ in columns)
    order = ", ".join(
        f"round({name}, 6)" if dtype in ("DOUBLE", "FLOAT") else f"{name}::varchar"
        for name, dtype in columns
    )
    return con.execute(f'select {listed} from "{schema}"."{table}" order by {order}').fetchall()


@pytest.mark.slow
def test_flask_history_round_trip_gives_identical_marts(
    sample_warehouse: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = tmp_path / "flask-bundle"
    exported = export_bundle(sample_warehouse, bundle)
    source_counts = counts(sample_warehouse)
    assert exported.rows(PATTERNS) == source_counts["patterns"] > 0
    assert exported.rows(EVENTS) == source_counts["usage_events"] > 0
    manifest = json.loads((bundle / MANIFEST).read_text())
    assert manifest["model"] == Embedder().tag
    assert manifest["projects"] == ["default"]

    target = tmp_path / "empty" / "engram.duckdb"
    # Nothing may be embedded on the way: not by the import, not by the build after it.
    monkeypatch.setattr(Embedder, "encode", _NoModel())
    report = import_bundle(bundle, target)
    assert report.total("loaded") == source_counts["patterns"] + source_counts["usage_events"]
    assert report.total("rejected") == 0 and report.texts_embedded == 0
    assert report.vectors_loaded == exported.rows(EMBEDDINGS)
    build(target, capture=True)
    assert rows(target, "select sum(texts_embedded) from raw.embedding_runs") == [(0,)]
    for table in ("patterns", "usage_events", "embeddings"):
        assert counts(target)[table] == source_counts[table], table

    source = duckdb.connect(str(sample_warehouse), read_only=True)
    copy = duckdb.connect(str(target), read_only=True)
    try:
        tables = mart_tables(source)
        assert len(tables) >= 15 and tables == mart_tables(copy)
        for schema, table in tables:
            expected, got = table_rows(source, schema, table), table_rows(copy, schema, table)
            assert len(got) == len(expected), f"{table}: {len(got)} rows, {len(expected)} before"
            for before, after in zip(expected, got, strict=True):
                assert close_enough(before, after), f"{table}: {before} != {after}"
    finally:
        source.close()
        copy.close()


# ------------------------------------------------------------------------- idempotence


def test_reimport_adds_nothing_and_accounts_for_every_row(
    two_project_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Embedder, "encode", _NoModel())
    alpha, everything = tmp_path / "alpha", tmp_path / "all"
    export_bundle(two_project_db, alpha, project="alpha")
    export_bundle(two_project_db, everything)
    target = tmp_path / "target.duckdb"

    first = import_bundle(alpha, target)
    after_first = counts(target)
    assert after_first["usage_events"] == 20 and after_first["patterns"] == 4

    again = import_bundle(alpha, target)  # the very same files: known by their sha256
    assert counts(target) == after_first
    assert again.total("loaded") == 0 and again.total("read") == first.total("read")
    assert again.tables[PATTERNS].already_imported and again.tables[EVENTS].already_imported

    # Other files, overlapping rows: judged row by row; only beta's rows are new.
    wider = import_bundle(everything, target)
    assert wider.tables[EVENTS].loaded == 20 and wider.tables[EVENTS].skipped == 20
    assert wider.tables[PATTERNS].loaded == 2 and wider.tables[PATTERNS].skipped == 4
    assert wider.total("rejected") == 0
    assert counts(target) == counts(two_project_db)
    for t in wider.tables.values():
        assert t.read == t.loaded + t.skipped + t.rejected, t

    runs = rows(
        target,
        "select records_read, records_loaded, records_skipped, status from raw.ingest_runs"
        " order by started_at",
    )
    assert runs == [(24, 24, 0, "succeeded"), (24, 0, 24, "succeeded"), (46, 22, 24, "succeeded")]
    assert rows(target, "select sum(texts_embedded) from raw.embedding_runs") == [(0,)]


# --------------------------------------------------------------------------- conflicts


def test_conflicting_records_are_reported_quarantined_and_the_original_kept(
    two_project_db: Path, tmp_path: Path, embedder: Embedder
) -> None:
    bundle = tmp_path / "bundle"
    export_bundle(two_project_db, bundle)
    target = tmp_path / "target.duckdb"
    mine = write_jsonl(
        tmp_path / "mine" / "patterns.jsonl",
        [{"pattern_id": "p1", "description": "my own, different approach number one"}],
    )
    write_jsonl(
        tmp_path / "mine" / "events.jsonl",
        [
            {
                "event_id": "e3",
                "pattern_id": "p1",
                "session_id": "elsewhere",
                "timestamp": "2023-05-05T00:00:00Z",
                "outcome_quality": 0.9,
            }
        ],
    )
    ingest_paths([mine.parent], target, embedder=embedder)
    before = rows(target, "select description from raw.patterns where pattern_id = 'p1'")

    report = import_bundle(bundle, target)
    assert report.tables[PATTERNS].conflicts == 1 and report.tables[EVENTS].conflicts == 1
    assert report.tables[PATTERNS].loaded == 5 and report.tables[EVENTS].loaded == 39
    assert "conflict: pattern 'p1'" in report.tables[PATTERNS].examples[0]
    assert "description" in report.tables[PATTERNS].examples[0]
    assert rows(target, "select description from raw.patterns where pattern_id = 'p1'") == before
    assert rows(target, "select session_id from raw.usage_events where event_id = 'e3'") == [
        ("elsewhere",)
    ]
    quarantined = rows(
        target,
        "select record_kind, field, reason, raw_text from raw.rejected_records order by 1",
    )
    assert [(kind, fld) for kind, fld, _r, _t in quarantined] == [
        ("event", "pattern_id"),
        ("pattern", "description"),
    ]
    assert all("warehouse's row was kept" in reason for _k, _f, reason, _t in quarantined)
    assert orjson.loads(quarantined[1][3])["description"].startswith("approach number 1")

    # Importing again neither loads nor quarantines anything twice.
    import_bundle(bundle, target)
    assert len(rows(target, "select * from raw.rejected_records")) == 2
    assert rows(target, "select count(*) from raw.usage_events") == [(40,)]


def test_merges_travel_and_a_competing_merge_is_a_conflict(
    two_project_db: Path, tmp_path: Path
) -> None:
    source = tmp_path / "source.duckdb"
    shutil.copy(two_project_db, source)
    merge_patterns(source, "p2", ["p0"], "the same approach")
    bundle = tmp_path / "alpha"
    export_bundle(source, bundle, project="alpha")  # alpha uses p0: its merge travels

    fresh = tmp_path / "fresh.duckdb"
    assert import_bundle(bundle, fresh).tables[SUPERSESSIONS].loaded == 1
    assert rows(
        fresh, "select kept_pattern_id, dropped_pattern_id, reason from raw.pattern_supersessions"
    ) == [("p2", "p0", "the same approach")]

    # A warehouse that merged p0 into p1 itself keeps its merge; the bundle's is a conflict.
    mine = tmp_path / "mine.duckdb"
    shutil.copy(two_project_db, mine)
    merge_patterns(mine, "p1", ["p0"], None)
    report = import_bundle(bundle, mine)
    merges = report.tables[SUPERSESSIONS]
    assert (merges.loaded, merges.conflicts) == (0, 1)
    assert "dropped_pattern_id" in merges.examples[0]
    assert report.total("loaded") == 0  # the patterns and events were there already
    assert rows(mine, "select kept_pattern_id from raw.pattern_supersessions") == [("p1",)]
    assert rows(mine, "select record_kind, field from raw.rejected_records") == [
        ("supersession", "dropped_pattern_id")
    ]


# ------------------------------------------------------------------------------ project


def test_project_filter_exports_only_that_projects_rows(
    two_project_db: Path, tmp_path: Path
) -> None:
    bundle = tmp_path / "beta"
    result = export_bundle(two_project_db, bundle, project="beta")
    assert result.manifest["projects"] == ["beta"] and result.manifest["project_filter"] == "beta"
    con = duckdb.connect()
    events = con.execute(
        f"select project_id, count(*) from '{bundle / EVENTS}' group by 1"
    ).fetchall()
    assert events == [("beta", 20)]
    patterns = con.execute(f"select pattern_id from '{bundle / PATTERNS}' order by 1").fetchall()
    assert [p for (p,) in patterns] == ["p2", "p3", "p4", "p5"]
    texts = con.execute(f"select text from '{bundle / EMBEDDINGS}'").fetchall()
    assert not any("alpha" in t for (t,) in texts)
    # the vectors are those of beta's patterns and beta's 7 distinct task texts
    assert len(texts) == 4 + 7 == result.rows(EMBEDDINGS)

    with pytest.raises(BundleError, match=r"no events of project 'gamma'.*alpha, beta"):
        export_bundle(two_project_db, tmp_path / "gamma", project="gamma")
    assert not (tmp_path / "gamma").exists()


# ------------------------------------------------------------------------ bad bundles


def test_corrupted_bundle_is_refused_naming_the_file(two_project_db: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    export_bundle(two_project_db, bundle)
    damaged = bundle / EVENTS
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    target = tmp_path / "target.duckdb"
    with pytest.raises(BundleError, match=f"{damaged}.*corrupted.*sha256"):
        import_bundle(bundle, target)
    assert not target.exists()  # refused before the warehouse was even opened

    (bundle / MANIFEST).write_text("{not json")
    with pytest.raises(BundleError, match=r"manifest\.json is corrupted"):
        import_bundle(bundle, target)
    with pytest.raises(BundleError, match=r"no manifest\.json"):
        import_bundle(tmp_path, target)


def test_vectors_of_another_model_family_are_refused_or_re_embedded(
    two_project_db: Path, tmp_path: Path, embedder: Embedder
) -> None:
    bundle = tmp_path / "bundle"
    export_bundle(two_project_db, bundle, project="alpha")
    manifest = json.loads((bundle / MANIFEST).read_text())
    manifest["model"] = "all-MiniLM-L6-v2:onnx-int8-dynamic"  # another family than int8
    (bundle / MANIFEST).write_text(json.dumps(manifest))
    target = tmp_path / "target.duckdb"
    ingest_paths(
        [
            write_jsonl(
                tmp_path / "own" / "patterns.jsonl",
                [{"pattern_id": "mine", "description": "a pattern of this machine"}],
            )
        ],
        target,
        embedder=embedder,
    )
    before = counts(target)
    with pytest.raises(BundleError, match=r"onnx-int8-dynamic.*--re-embed"):
        import_bundle(bundle, target)
    assert counts(target) == before

    report = import_bundle(bundle, target, re_embed=True, embedder=embedder)
    assert report.vectors_loaded == 0 and report.model == embedder.tag
    assert report.texts_embedded == 4 + 7  # alpha's patterns and distinct task texts
    assert rows(target, "select count(distinct model) from raw.embeddings") == [(1,)]


# -------------------------------------------------------------------------------- kill

KILLER = """
import os, signal, sys
from pathlib import Path
from ingest.bundle import import_bundle

def die(step):
    print(step, flush=True)
    if step == sys.argv[3]:
        os.kill(os.getpid(), signal.SIGKILL)

import_bundle(Path(sys.argv[1]), Path(sys.argv[2]), on_step=die)
"""


@pytest.mark.parametrize("step", [PATTERNS, EMBEDDINGS])
def test_killed_import_leaves_nothing_and_a_rerun_loads_everything(
    two_project_db: Path, tmp_path: Path, step: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = tmp_path / "bundle"
    export_bundle(two_project_db, bundle)
    target = tmp_path / "target.duckdb"
    child = subprocess.run(
        [sys.executable, "-c", KILLER, str(bundle), str(target), step],
        capture_output=True,
        text=True,
        cwd=CHECKOUT_ROOT,
        env={**os.environ, "PYTHONPATH": str(CHECKOUT_ROOT)},
        timeout=120,
    )
    assert child.returncode == -9, child.stderr  # it died of SIGKILL, mid-publish
    assert step in child.stdout
    assert counts(target) == dict.fromkeys(RAW_DATA, 0)
    assert rows(target, "select status from raw.ingest_runs") == [("running",)]

    monkeypatch.setattr(Embedder, "encode", _NoModel())
    report = import_bundle(bundle, target)
    assert report.total("loaded") == 46
    assert counts(target) == counts(two_project_db)
    assert not list(tmp_path.glob("*.scratch.duckdb"))


# --------------------------------------------------------------------------------- CLI


def test_cli_export_and_import(
    two_project_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / "b"
    assert main(["--db", str(two_project_db), "export", str(bundle), "--project", "alpha"]) == 0
    out = capsys.readouterr().out
    assert "exported 4 patterns, 20 events, 0 merges and 11 vectors" in out
    assert main(["--db", str(two_project_db), "export", str(bundle)]) == 1
    assert "already exists" in capsys.readouterr().err

    target = tmp_path / "t.duckdb"
    assert main(["import", str(bundle), "--db", str(target)]) == 0
    out = capsys.readouterr().out
    assert "total: read 24, loaded 24, skipped 0, rejected 0, conflicts 0" in out
    assert "11 vectors loaded" in out and "0 texts embedded" in out

    (bundle / PATTERNS).write_bytes(b"garbage")
    assert main(["import", str(bundle), "--db", str(target)]) == 1
    err = capsys.readouterr().err
    assert "engram import: error: bundle file" in err and "patterns.parquet" in err
