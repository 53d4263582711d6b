"""Compaction (engram.compact, `engram compact`): the warehouse file gives back the space its
builds left free, keeps every row, and a kill at any point leaves a warehouse that opens
with the same data."""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from engram.build import build
from engram.cli.main import main
from engram.compact import CompactError, compact, free_share, remove_debris

DRIVER = """
import sys
from pathlib import Path
from engram.compact import compact
print("start", flush=True)
result = compact(Path(sys.argv[1]))
print("done", result.bytes_after, flush=True)
"""


def fingerprint(db: Path) -> dict[str, tuple[int, int]]:
    """Per table and view: (rows, xor of the rows' hashes): equal content, equal prints."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        names = con.execute(
            "select table_schema || '.' || table_name from information_schema.tables "
            "where table_schema not in ('information_schema', 'pg_catalog') order by 1"
        ).fetchall()
        out = {}
        for (name,) in names:
            schema, table = name.split(".", 1)
            row = con.execute(
                f'select count(*), coalesce(bit_xor(hash(t)), 0) from "{schema}"."{table}" as t'
            ).fetchone()
            assert row is not None
            out[name] = (int(row[0]), int(row[1]))
        return out
    finally:
        con.close()


@pytest.fixture(scope="module")
def rebuilt_warehouse(sample_warehouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample warehouse after one more full-refresh build: every mart replaced, so the
    file holds the replaced tables' blocks as free space. Never compacted itself."""
    db = tmp_path_factory.mktemp("compact_src") / "engram.duckdb"
    shutil.copyfile(sample_warehouse, db)
    build(db, full_refresh=True, capture=True, publish=False, compact_above=1.0)
    return db


def test_compact_gives_back_the_free_blocks_and_keeps_every_row(
    rebuilt_warehouse: Path, tmp_path: Path
) -> None:
    db = tmp_path / "engram.duckdb"
    shutil.copyfile(rebuilt_warehouse, db)
    before = fingerprint(db)
    share = free_share(db)
    assert share > 0.2, f"the rebuild left only {share:.0%} free: nothing to test"
    size_before = db.stat().st_size

    result = compact(db)

    assert result.bytes_before == size_before
    assert result.bytes_after == db.stat().st_size
    assert result.bytes_after < size_before * (1 - share / 2)
    assert free_share(db) < 0.05
    assert fingerprint(db) == before  # same tables, views, rows
    assert not list(tmp_path.glob("*.partial*")) and not (tmp_path / "engram.duckdb.wal").exists()
    # the compacted warehouse builds again, incrementally
    build(db, capture=True, publish=False, compact_above=1.0)


def test_a_copy_that_does_not_match_is_refused_and_the_warehouse_kept(
    rebuilt_warehouse: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import engram.compact as module

    db = tmp_path / "engram.duckdb"
    shutil.copyfile(rebuilt_warehouse, db)
    before, size = fingerprint(db), db.stat().st_size
    real = module._row_counts

    def one_row_short(con: duckdb.DuckDBPyConnection, catalog: str, tables: list[str]):
        counts = real(con, catalog, tables)
        if catalog == "engram_compact_target":
            counts["raw.usage_events"] -= 1
        return counts

    monkeypatch.setattr(module, "_row_counts", one_row_short)
    with pytest.raises(CompactError, match=r"raw\.usage_events"):
        compact(db)
    assert db.stat().st_size == size and fingerprint(db) == before
    assert not list(tmp_path.glob("*.partial*"))


@pytest.mark.parametrize("seed", range(4))
def test_a_kill_during_compaction_leaves_the_same_data(
    rebuilt_warehouse: Path, tmp_path: Path, seed: int
) -> None:
    """SIGKILL the compaction at a seeded random moment of its run; the warehouse opens with
    the same content (old file or new), and the next compaction removes any partial copy."""
    db = tmp_path / "engram.duckdb"
    shutil.copyfile(rebuilt_warehouse, db)
    before = fingerprint(db)
    timing = tmp_path / "timing.duckdb"
    shutil.copyfile(rebuilt_warehouse, timing)
    started = time.perf_counter()
    compact(timing)
    duration = time.perf_counter() - started

    child = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(db)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "start"
    time.sleep(random.Random(seed).uniform(0, duration))
    child.send_signal(signal.SIGKILL)
    child.wait()

    assert fingerprint(db) == before
    remove_debris(db)
    assert not list(tmp_path.glob("engram.duckdb.compact-*"))
    compact(db)
    assert fingerprint(db) == before


def test_cli_compact_reports_and_respects_if_free_above(
    rebuilt_warehouse: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "engram.duckdb"
    shutil.copyfile(rebuilt_warehouse, db)
    size = db.stat().st_size
    assert main(["compact", "--db", str(db), "--if-free-above", "0.99"]) == 0
    assert "left as is" in capsys.readouterr().out and db.stat().st_size == size
    assert main(["compact", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "MiB were free blocks" in out and db.stat().st_size < size
    assert main(["compact", "--db", str(tmp_path / "none.duckdb")]) != 0
    assert "no warehouse" in capsys.readouterr().err


def test_every_view_gives_the_same_bits_on_every_read(sample_warehouse: Path) -> None:
    """Views re-run their query on each read (tests, publish, compaction's check). The ones
    that sum qualities sum exact decimals (macros/exact_decimal.sql): with plain double
    sums, DuckDB's threads combined partial sums in varying order and pattern_project_predictions
    changed in the last bits between two reads of the same file (seen under load), which
    made an unchanged serving copy look changed and compaction fingerprints differ."""
    con = duckdb.connect(str(sample_warehouse), read_only=True, config={"threads": 4})
    try:
        views = [
            f"{schema}.{name}"
            for schema, name in con.execute(
                "select schema_name, view_name from duckdb_views() where not internal "
                "and schema_name not in ('information_schema', 'pg_catalog') order by all"
            ).fetchall()
        ]
        assert "marts.pattern_project_predictions" in views and "marts.pattern_trends" in views
        for view in views:
            prints = {
                con.execute(f"select count(*), bit_xor(hash(t)) from {view} as t").fetchone()
                for _ in range(5)
            }
            assert len(prints) == 1, f"{view} read differently: {prints}"
    finally:
        con.close()
