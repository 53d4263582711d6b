"""Export the file relationship graph (marts.file_graph_nodes / file_graph_edges) as GraphML,
so Gephi, Cytoscape, networkx or igraph can load it without knowing the warehouse."""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import duckdb

GRAPHML_NS = "http://graphml.graphdrawing.org/xmlns"

# (GraphML key id, attribute name, domain, GraphML type); data follow this order.
NODE_KEYS: tuple[tuple[str, str, str], ...] = (
    ("project_id", "node", "string"),
    ("file_path", "node", "string"),
    ("n_events", "node", "long"),
    ("avg_quality", "node", "double"),
    ("degree", "node", "long"),
)
EDGE_KEYS: tuple[tuple[str, str, str], ...] = (
    ("weight", "edge", "long"),
    ("avg_quality", "edge", "double"),
    ("success_correlation", "edge", "double"),
)


def _key_id(domain: str, name: str) -> str:
    return f"{domain[0]}_{name}"


def _text(value: object) -> str | None:
    """GraphML text for a value; None (no <data>) for SQL null or NaN."""
    if value is None:
        return None
    if isinstance(value, float):
        return None if math.isnan(value) else repr(value)
    return str(value)


def _add_data(parent: ET.Element, domain: str, names: tuple[str, ...], row: tuple) -> None:
    for name, value in zip(names, row, strict=True):
        text = _text(value)
        if text is not None:
            ET.SubElement(parent, "data", key=_key_id(domain, name)).text = text


def write_graphml(
    db_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    min_support: int | None = None,
    project: str | None = None,
) -> tuple[int, int]:
    """Write the file graph of the warehouse at `db_path` (opened read-only) to `out_path`.

    Without `min_support` the marts are written as they are: every file node (isolated ones
    too) and every edge. With it, only edges of weight >= min_support and the files at their
    ends (node attributes, degree included, stay as in the mart). Node ids are n0, n1, ...
    (GraphML ids cannot hold '/'); the path is the `file_path` attribute and its project the
    `project_id` attribute (a path is a file within one project). `project` keeps one
    project's graph only. Returns (nodes, edges) written.
    """
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        conditions = ["weight >= $min_support"] if min_support is not None else []
        conditions += ["project_id = $project"] if project is not None else []
        params: dict[str, object] = {}
        if min_support is not None:
            params["min_support"] = min_support
        edge_filter = f"where {' and '.join(conditions)}" if conditions else ""
        edges = con.execute(
            f"""
            select project_id, file_a, file_b, weight, avg_quality, success_correlation
            from marts.file_graph_edges {edge_filter}
            order by project_id, file_a, file_b
            """,
            {**params, **({"project": project} if project is not None else {})},
        ).fetchall()
        node_filter = "where project_id = $project" if project is not None else ""
        nodes = con.execute(
            "select project_id, file_path, n_events, avg_quality, degree "
            f"from marts.file_graph_nodes {node_filter} order by project_id, file_path",
            {"project": project} if project is not None else {},
        ).fetchall()
    finally:
        con.close()
    if min_support is not None:
        ends = {(edge[0], path) for edge in edges for path in edge[1:3]}
        nodes = [node for node in nodes if (node[0], node[1]) in ends]

    root = ET.Element("graphml", xmlns=GRAPHML_NS)
    for name, domain, kind in (*NODE_KEYS, *EDGE_KEYS):
        ET.SubElement(
            root,
            "key",
            {"id": _key_id(domain, name), "for": domain, "attr.name": name, "attr.type": kind},
        )
    graph = ET.SubElement(root, "graph", id="file_graph", edgedefault="undirected")
    node_names = tuple(name for name, _, _ in NODE_KEYS)
    edge_names = tuple(name for name, _, _ in EDGE_KEYS)
    ids: dict[tuple[str, str], str] = {}
    for node in nodes:
        key = (node[0], node[1])
        ids[key] = f"n{len(ids)}"
        _add_data(ET.SubElement(graph, "node", id=ids[key]), "node", node_names, node)
    for k, (project_id, file_a, file_b, *attrs) in enumerate(edges):
        source, target = ids[(project_id, file_a)], ids[(project_id, file_b)]
        element = ET.SubElement(graph, "edge", id=f"e{k}", source=source, target=target)
        _add_data(element, "edge", edge_names, tuple(attrs))

    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    ET.ElementTree(root).write(tmp, encoding="utf-8", xml_declaration=True)
    tmp.replace(out)
    return len(nodes), len(edges)
