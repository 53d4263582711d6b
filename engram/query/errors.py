"""What can go wrong with a question, and the argument checks every entry point shares.

Two kinds, because callers act differently on them: `InvalidQuery` is a wrong question
(empty text, k <= 0, unknown id; the CLI exits 2, MCP returns a tool error), `QueryError`
is a question that cannot be answered now (no warehouse, mart not built, bad SQL; exit 1).
"""

from __future__ import annotations

from typing import Any

MAX_K = 1000


class QueryError(Exception):
    """A question could not be answered (no warehouse, mart not built, bad SQL): exit 1."""


class ServingError(QueryError):
    """Nothing can be served: no warehouse, or it is locked and nothing was published."""


class MissingMart(QueryError):
    def __init__(self, relation: str) -> None:
        super().__init__(f"{relation} is not built yet: run `engram build`")


class InvalidQuery(ValueError):
    """The question itself is wrong (empty text, k <= 0, unknown id): a usage error, exit 2."""


def check_text(text: Any, what: str = "text") -> str:
    """Non-empty text, stripped."""
    if text is None or not str(text).strip():
        raise InvalidQuery(f"{what} is empty: give the words to search for")
    return str(text).strip()


def check_k(k: Any, name: str = "k") -> int:
    """A positive integer no larger than MAX_K (bools are not integers here)."""
    import numbers

    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k <= 0:
        raise InvalidQuery(f"{name} must be a positive integer, got {k!r}")
    if k > MAX_K:
        raise InvalidQuery(f"{name} must be at most {MAX_K}, got {k}")
    return int(k)
