"""The layers depend one way (docs/architecture.md), checked on the source with `ast`.

Bottom to top: `ingest` (warehouse, embedding, contract, reader, loader) and
`engram.numeric` (numpy/scipy building blocks the dbt Python models import); then
`engram`'s own base (project, render, generate); `engram.query`; `engram.build`;
`engram.cli`; `orchestration`; and `bench`, which nothing imports. A module may import
its own layer and the layers below, never one above; no module imports a private
(`_name`) from another module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ingest.warehouse import CHECKOUT_ROOT

# Layer of a module, by longest matching prefix.
LAYERS: dict[str, str] = {
    "ingest": "ingest",
    "engram.numeric": "numeric",
    "engram": "base",  # engram/__init__, project, render
    "engram.generate": "generate",
    "engram.query": "query",
    "engram.build": "build",
    "engram.cli": "cli",
    "engram.__main__": "cli",  # `python -m engram` is the CLI
    "orchestration": "orchestration",
    "bench": "bench",
    "models": "dbt_models",
}

# Which layers each layer may import (besides the standard library and third parties).
ALLOWED: dict[str, set[str]] = {
    "ingest": {"ingest"},
    "numeric": {"numeric"},
    "generate": {"generate"},
    "base": {"base", "ingest"},
    "query": {"query", "base", "numeric", "ingest"},
    "build": {"build", "query", "base", "ingest"},
    "cli": {"cli", "build", "query", "base", "generate", "numeric", "ingest"},
    "orchestration": {"orchestration", "build", "query", "base", "ingest"},
    "bench": {"bench", "cli", "build", "query", "base", "generate", "numeric", "ingest"},
    "dbt_models": {"numeric"},
}
OURS = ("ingest", "engram", "orchestration", "bench")


def layer_of(module: str) -> str | None:
    best = None
    for prefix in LAYERS:
        if (module == prefix or module.startswith(prefix + ".")) and (
            best is None or len(prefix) > len(best)
        ):
            best = prefix
    return LAYERS[best] if best else None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(CHECKOUT_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files() -> list[Path]:
    files = []
    for top in (*OURS, "models"):
        files += sorted((CHECKOUT_ROOT / top).rglob("*.py"))
    return files


def imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, imported module, names imported from it) of every import in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else None
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: resolve against the package
                base = (package or module_name(path)).split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            out.append((node.lineno, module, [alias.name for alias in node.names]))
    return out


def test_the_checker_sees_every_layer() -> None:
    """Guard the guard: the walk finds each layer's files and their imports."""
    found = {layer_of(module_name(p)) for p in source_files()}
    assert set(ALLOWED) <= found, set(ALLOWED) - found
    assert len(source_files()) > 40


@pytest.mark.parametrize("path", source_files(), ids=lambda p: str(p.relative_to(CHECKOUT_ROOT)))
def test_imports_only_go_down(path: Path) -> None:
    own = layer_of(module_name(path))
    assert own is not None
    wrong = []
    for line, module, _names in imports(path):
        if not module.startswith(OURS):
            continue
        target = layer_of(module)
        if target is not None and target not in ALLOWED[own]:
            wrong.append(f"line {line}: {own} imports {module} ({target})")
    assert not wrong, wrong


@pytest.mark.parametrize("path", source_files(), ids=lambda p: str(p.relative_to(CHECKOUT_ROOT)))
def test_no_private_names_imported_across_modules(path: Path) -> None:
    private = [
        f"line {line}: from {module} import {name}"
        for line, module, names in imports(path)
        if module.startswith(OURS)
        for name in names
        if name.startswith("_") and not name.startswith("__")
    ]
    assert not private, private


def test_nothing_in_the_product_imports_the_benchmarks() -> None:
    offenders = [
        f"{path.relative_to(CHECKOUT_ROOT)}:{line}"
        for path in source_files()
        if layer_of(module_name(path)) != "bench"
        for line, module, _ in imports(path)
        if module == "bench" or module.startswith("bench.")
    ]
    assert not offenders, offenders


def test_subpackages_have_no_import_cycles() -> None:
    """Between subpackages (ingest, engram.query, engram.cli, ...): the graph of which
    imports which, at module level, is acyclic."""
    graph: dict[str, set[str]] = {}
    for path in source_files():
        src = ".".join(module_name(path).split(".")[:2])
        for _, module, _ in imports(path):
            if module.startswith(OURS):
                dst = ".".join(module.split(".")[:2])
                if dst != src:
                    graph.setdefault(src, set()).add(dst)
    groups = {".".join(module_name(p).split(".")[:2]) for p in source_files()}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            if nxt not in groups:
                continue
            if state.get(nxt) == 1:
                raise AssertionError(f"import cycle: {' -> '.join([*trail, node, nxt])}")
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = 2

    for group in sorted(groups):
        if group not in state:
            visit(group, [])
