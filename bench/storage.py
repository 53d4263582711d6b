"""`python -m bench.storage WAREHOUSE`: what takes the space in a DuckDB file, per table and
per column, from `pragma_storage_info`.

DuckDB reports each column segment's block and offset, not its size; a segment's size is
taken as the gap to the next segment's offset in the same block (or to the block's end),
plus any additional blocks it spans. `pragma database_size` gives the free blocks: space
left by dropped tables that the file keeps until later writes reuse it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import duckdb

from engram.compact import free_bytes

BLOCK = 262_144


def breakdown(db: Path, top_columns: int = 20) -> dict[str, object]:
    """{"file_bytes", "free_bytes", "tables": [(name, bytes, rows)], "columns": [...]}"""
    con = duckdb.connect(str(db), read_only=True)
    try:
        tables = [
            f"{schema}.{table}"
            for schema, table in con.execute(
                "select schema_name, table_name from duckdb_tables() order by all"
            ).fetchall()
        ]
        parts = [
            f"select '{t}' as t, column_name, compression, block_id, block_offset, "
            "coalesce(len(additional_block_ids), 0) as extra "
            f"from pragma_storage_info('{t}') where persistent and block_id >= 0"
            for t in tables
        ]
        con.execute("create temp table segments as " + " union all ".join(parts))
        con.execute(
            f"""
            create temp table sized as select *,
                coalesce(lead(block_offset) over (partition by block_id order by block_offset),
                         {BLOCK}) - block_offset + extra * {BLOCK} as bytes
            from segments
            """
        )
        per_table = con.execute(
            "select t, sum(bytes)::bigint from sized group by t order by 2 desc"
        ).fetchall()
        rows = {t: int(con.execute(f"select count(*) from {t}").fetchone()[0]) for t in tables}  # type: ignore[index]
        columns = con.execute(
            "select t, column_name, any_value(compression), sum(bytes)::bigint "
            f"from sized group by all order by 4 desc limit {top_columns}"
        ).fetchall()
        free = free_bytes(con)
    finally:
        con.close()
    return {
        "file_bytes": db.stat().st_size,
        "free_bytes": free,
        "tables": [(t, int(b), rows[t]) for t, b in per_table],
        "columns": [(t, c, comp, int(b)) for t, c, comp, b in columns],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.storage", description=__doc__)
    parser.add_argument("warehouse", type=Path)
    parser.add_argument("--events", type=int, help="events in it: also print bytes per event")
    args = parser.parse_args(argv)
    if not args.warehouse.exists():
        print(f"bench.storage: no such file: {args.warehouse}", file=sys.stderr)
        return 2
    info = breakdown(args.warehouse)
    mib = 2**20
    per_event = f" ({info['file_bytes'] / args.events:.0f} bytes/event)" if args.events else ""
    free = info["free_bytes"] / mib  # type: ignore[operator]
    print(f"file {info['file_bytes'] / mib:.1f} MiB{per_event}, free blocks {free:.1f} MiB")
    for t, b, n in info["tables"]:  # type: ignore[union-attr]
        print(f"  {t:55s} {b / mib:9.1f} MiB  {n:>12,} rows")
    print("largest columns:")
    for t, c, comp, b in info["columns"]:  # type: ignore[union-attr]
        print(f"  {t + '.' + c:70s} {comp:12s} {b / mib:9.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
