"""`engram sql` / `Memory.sql` cannot escape: each attack that worked before the sandbox
(an agent sending generated SQL, a careless user) is tried here and must fail, leaving the
warehouse, the serving copy and the file system as they were; embed() keeps working."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from engram.query.errors import QueryError
from engram.query.memory import Memory
from engram.query.serving import current
from ingest.embedder import Embedder
from ingest.loader import ingest_paths
from ingest.warehouse import CHECKOUT_ROOT, sql_string

pytestmark = pytest.mark.slow


def escapes(warehouse: Path, scratch: Path) -> dict[str, str]:
    """Name -> SQL of each escape the issue lists, and the neighbours of each."""
    wh, out = sql_string(warehouse), scratch / "out"
    return {
        "attach the warehouse read-write and delete": (
            f"attach {wh} as w (read_only false); delete from w.raw.usage_events where true"
        ),
        "attach the warehouse read-only": f"attach {wh} as w (read_only)",
        "attach a new file": f"attach {sql_string(out / 'new.duckdb')} as n",
        "attach in memory": "attach ':memory:' as m",
        "copy a query to a file": f"copy (select 1) to {sql_string(out / 'x.csv')}",
        "copy over the warehouse": f"copy (select 1) to {wh}",
        "export the database": f"export database {sql_string(out / 'exported')}",
        "read_text a system file": "select * from read_text('/etc/passwd')",
        "read_csv a system file": "select * from read_csv('/etc/passwd')",
        "read_blob": "select * from read_blob('/etc/hostname')",
        "glob the file system": "select * from glob('/root/*')",
        "read a url": "select * from read_csv('http://127.0.0.1:9/x.csv')",
        "install an extension": "install httpfs",
        "load an extension": "load httpfs",
        "turn external access back on": "set enable_external_access = true",
        "reset external access": "reset enable_external_access",
        "unlock the configuration": "set lock_configuration = false",
        "set a memory limit": "set memory_limit = '1GB'",
        "pragma": "pragma enable_profiling",
        "write to the copy": "create table marts.evil as select 1 as x",
        "delete from the copy": "delete from marts.dim_patterns",
        "drop a mart": "drop table marts.dim_patterns",
        "detach the copy": "detach engram_serving",
    }


@pytest.fixture(scope="module")
def memory(planted_warehouse: Path, embedder: Embedder) -> Iterator[Memory]:
    with Memory(planted_warehouse, embedder=embedder) as m:
        yield m


def fingerprint(db: Path) -> tuple[int, int]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        events = con.execute("select count(*) from raw.usage_events").fetchone()[0]  # type: ignore[index]
        patterns = con.execute("select count(*) from raw.patterns").fetchone()[0]  # type: ignore[index]
    finally:
        con.close()
    return int(events), int(patterns)


def test_every_escape_fails_and_nothing_changes(
    memory: Memory, planted_warehouse: Path, tmp_path: Path
) -> None:
    (tmp_path / "out").mkdir()
    before = fingerprint(planted_warehouse)
    copy = current(planted_warehouse)
    assert copy is not None and memory.copy is not None  # it reads the serving copy
    copy_bytes = copy.database.read_bytes()
    escaped = []
    for name, sql in escapes(planted_warehouse, tmp_path).items():
        try:
            memory.sql(sql)
        except QueryError:
            continue
        escaped.append(name)
    assert not escaped, escaped
    assert fingerprint(planted_warehouse) == before
    assert copy.database.read_bytes() == copy_bytes
    assert list((tmp_path / "out").iterdir()) == []
    # what the sandbox is for still works: the marts, and search by meaning in SQL
    assert len(memory.sql("select * from marts.dim_patterns limit 3")) == 3
    ranked = memory.sql(
        "select pattern_id from marts.dim_patterns "
        "order by array_cosine_similarity(embedding, embed('flaky test')) desc limit 3"
    )
    assert len(ranked) == 3


def test_the_warehouse_itself_is_sandboxed_before_any_publish(
    tmp_path: Path, embedder: Embedder
) -> None:
    """No serving copy yet: Memory reads the warehouse read-only, in the same sandbox."""
    db = tmp_path / "wh.duckdb"
    ingest_paths([CHECKOUT_ROOT / "data" / "sample" / "flask-history"], db, embed=False)
    (tmp_path / "out").mkdir()
    before = fingerprint(db)
    with Memory(db, embedder=embedder) as memory:
        assert memory.copy is None
        assert int(memory.sql("select count(*) as n from raw.patterns")["n"][0]) == before[1]
        for name, sql in escapes(db, tmp_path).items():
            with pytest.raises(QueryError):
                memory.sql(sql)
                pytest.fail(f"escaped: {name}")
    assert fingerprint(db) == before
    assert list((tmp_path / "out").iterdir()) == []


def test_cli_sql_refuses_with_one_line_and_exit_1(planted_warehouse: Path, tmp_path: Path) -> None:
    target = tmp_path / "stolen.csv"
    for sql in (
        f"copy (select * from marts.dim_patterns) to {sql_string(target)}",
        f"attach {sql_string(planted_warehouse)} as w (read_only false)",
        "select * from read_text('/etc/passwd')",
    ):
        result = subprocess.run(
            [sys.executable, "-m", "engram", "sql", sql, "--json", "--db", str(planted_warehouse)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "query failed" in result.stderr
    assert not target.exists()
    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "engram",
            "sql",
            "select count(*) as n from marts.dim_patterns",
            "--json",
            "--db",
            str(planted_warehouse),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0 and json.loads(ok.stdout)[0]["n"] > 0
