"""Every command is documented: in the README, with a --help that reads like a manual, and
every make target in `make help` (the self-documenting Makefile)."""

from __future__ import annotations

import argparse
import re

import pytest

from engram.cli.main import build_parser
from ingest.warehouse import CHECKOUT_ROOT

README = (CHECKOUT_ROOT / "README.md").read_text()


def commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_the_cli_has_the_commands_the_readme_promises() -> None:
    assert {"ingest", "build", "report", "similar", "predict", "sql"} <= set(commands())


@pytest.mark.parametrize("name", sorted(commands()))
def test_every_command_is_in_the_readme(name: str) -> None:
    assert re.search(rf"engram {re.escape(name)}\b", README), f"`engram {name}` not in README"


@pytest.mark.parametrize("name", sorted(commands()))
def test_every_command_has_a_manual_page(name: str) -> None:
    parser = commands()[name]
    text = parser.format_help()
    assert parser.description and len(parser.description.split()) >= 12, name
    assert "--db" in text or name == "generate", name


def test_every_make_target_is_self_documented() -> None:
    makefile = (CHECKOUT_ROOT / "Makefile").read_text()
    targets = re.findall(r"^([a-z-]+):", makefile, re.M)
    undocumented = [t for t in targets if not re.search(rf"^{t}:.*## ", makefile, re.M)]
    assert not undocumented, undocumented


def test_readme_links_to_docs_resolve() -> None:
    """A moved or renamed page (docs/scale-out.md, docs/benchmarks.md, ...) breaks the
    README's pointers silently; every relative docs/ link must name a file that exists."""
    links = re.findall(r"\]\((docs/[^)#\s]+)(?:#[^)]*)?\)", README)
    assert "docs/scale-out.md" in links, "the README lost its pointer to docs/scale-out.md"
    missing = sorted({link for link in links if not (CHECKOUT_ROOT / link).exists()})
    assert not missing, missing


def test_docs_hold_no_unfilled_placeholders() -> None:
    """Measured sections are written as placeholders first and filled from a bench run;
    an unfilled one must not reach main (docs/scale-out.md "Measured")."""
    placeholder = re.compile(r"\b(MEASURED_FIGURES|X\d+_TABLE|CROSSOVER_TEXT)\b")
    found = [
        f"{page.name}:{number}"
        for page in sorted((CHECKOUT_ROOT / "docs").glob("*.md"))
        for number, line in enumerate(page.read_text().splitlines(), start=1)
        if placeholder.search(line)
    ]
    assert not found, found
