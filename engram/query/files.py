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


def files(
    reader: Reader, file: str | None = None, top: int = 20, project: str | None = None
) -> pd.DataFrame:
    """Files that travel with `file` (or the strongest pairs overall) and how they fare.

    Pairs are per project (a path names a file within one repository); `project` keeps
    one project's pairs, None shows every project's (each row says which)."""
    top = check_k(top, "top")
    reader.require("marts.file_cooccurrence")
    if file is None and project is None:
        answer = answers.strongest_file_pairs(reader.con, reader.relations, top)
        assert answer is not None  # the mart exists
        return answer.frame.drop(columns=["change_per_year"])
    in_project = "project_id = $project" if project is not None else "true"
    params: dict[str, object] = {"top": top}
    if project is not None:
        params["project"] = project
    if file is None:
        return reader.df(
            f"""
            select project_id, file_a, file_b, {PAIR_COLUMNS}
            from marts.file_cooccurrence where {in_project}
            order by co_occurrences desc, file_a, file_b limit $top
            """,
            params,
        )
    params["file"] = check_text(file, "file")
    frame = reader.df(
        f"""
        select project_id,
               case when file_a = $file then file_b else file_a end as travels_with,
               {PAIR_COLUMNS}
        from marts.file_cooccurrence where (file_a = $file or file_b = $file) and {in_project}
        order by co_occurrences desc, project_id, travels_with limit $top
        """,
        params,
    )
    if frame.empty and not file_known(reader, file, project):
        where = f" in project {project!r}" if project is not None else ""
        raise InvalidQuery(f"unknown file {file!r}{where}: no usage event involves it")
    return frame


def file_known(reader: Reader, file: str, project: str | None = None) -> bool:
    if not reader.has("marts.file_graph_nodes"):
        return False
    if project is None:
        sql, params = "select 1 from marts.file_graph_nodes where file_path = ?", [file]
    else:
        sql = "select 1 from marts.file_graph_nodes where file_path = ? and project_id = ?"
        params = [file, project]
    return bool(reader.rows(sql, params))


def file_graph(reader: Reader) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(nodes, edges) of the file co-occurrence graph."""
    reader.require("marts.file_graph_nodes", "marts.file_graph_edges")
    nodes = reader.df("select * from marts.file_graph_nodes order by n_events desc, file_path")
    edges = reader.df("select * from marts.file_graph_edges order by weight desc, file_a, file_b")
    return nodes, edges
