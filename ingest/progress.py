"""Progress reporting that the library code can use without knowing about terminals."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Protocol


class ProgressBar(Protocol):
    def update(self, n: int) -> object: ...

    def close(self) -> None: ...


# (total units, description) -> a bar; total 0 means unknown.
ProgressFactory = Callable[[int, str], ProgressBar]


def terminal_progress(total: int, description: str) -> ProgressBar:
    """A tqdm bar on stderr; tqdm hides itself when stderr is not a terminal."""
    from tqdm import tqdm

    return tqdm(
        total=total or None,
        desc=description,
        unit_scale=True,
        file=sys.stderr,
        disable=None,
        leave=False,
        dynamic_ncols=True,
    )
