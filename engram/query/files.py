"""Which files travel together, and how do those combinations fare?

Reads marts.file_cooccurrence and the file graph marts; the overview (no file) is the
headline answer `answers.strongest_file_pairs`. GraphML export: engram.query.file_graph.
"""

from __future__ import annotations

import pandas as pd

from engram.query import answers
from engram.query.errors import InvalidQuery, check_k, check_text
from engram.query.reader import Reader

PAIR_COLUMNS = """co_occurrences, avg_quality, quality_lift, success_correlation,
                  quality_slope_per_week, direction, first_seen_at, last_seen_at"""


def files(reader: Reader, file: str | None = None, top: int = 20) -> pd.DataFrame:
    """Files that travel with `file` (or the strongest pairs overall) and how they fare."""
    top = check_k(top, "top")
    reader.require("marts.file_cooccurrence")
    if file is None:
        answer = answers.strongest_file_pairs(reader.con, reader.relations, top)
        assert answer is not None  # the mart exists
        return answer.frame.drop(columns=["change_per_year"])
    file = check_text(file, "file")
    frame = reader.df(
        f"""
        select case when file_a = $1 then file_b else file_a end as travels_with, {PAIR_COLUMNS}
        from marts.file_cooccurrence where file_a = $1 or file_b = $1
        order by co_occurrences desc, travels_with limit $2
        """,
        [file, top],
    )
    if frame.empty and not file_known(reader, file):
        raise InvalidQuery(f"unknown file {file!r}: no usage event involves it")
    return frame


def file_known(reader: Reader, file: str) -> bool:
    if not reader.has("marts.file_graph_nodes"):
        return False
    return bool(reader.rows("select 1 from marts.file_graph_nodes where file_path = ?", [file]))


def file_graph(reader: Reader) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(nodes, edges) of the file co-occurrence graph."""
    reader.require("marts.file_graph_nodes", "marts.file_graph_edges")
    nodes = reader.df("select * from marts.file_graph_nodes order by n_events desc, file_path")
    edges = reader.df("select * from marts.file_graph_edges order by weight desc, file_a, file_b")
    return nodes, edges
