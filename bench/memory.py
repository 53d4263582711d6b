"""Peak resident memory, in bytes, from the kernel's own accounting (no sampling thread).

The dbt build runs as a child process; `os.wait4` returns that one child's rusage, whose
ru_maxrss is its peak RSS (dbt-duckdb runs the SQL and the Python models inside the dbt
process, so this is the build's peak). ru_maxrss is in KiB on Linux, bytes on macOS.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


def _to_bytes(maxrss: int) -> int:
    return maxrss if sys.platform == "darwin" else maxrss * 1024


def wait_with_peak_rss(child: subprocess.Popen[bytes]) -> tuple[int, int]:
    """Wait for the child; (exit code, its peak RSS in bytes)."""
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    return child.returncode, _to_bytes(usage.ru_maxrss)


# --------------------------------------------------------------------------- memory guard

GUARD_FLOOR_SHARE = 0.05  # of the machine's memory
GUARD_FLOOR_MIN_BYTES = 1 << 30


def available_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (what can be allocated without swapping); None where
    the kernel does not say (not Linux)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def guard_floor_bytes() -> int:
    """The default floor: 5% of the machine's memory, at least 1 GiB (1.2 GiB of 24)."""
    total = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                total = int(line.split()[1]) * 1024
    return max(GUARD_FLOOR_MIN_BYTES, int(total * GUARD_FLOOR_SHARE))


@dataclass(frozen=True)
class GuardedExit:
    exit_code: int
    peak_rss_bytes: int
    guard_killed: bool  # the guard, not the child or the kernel, ended it
    available_at_kill: int | None  # MemAvailable when the guard fired


def wait_with_memory_guard(
    child: subprocess.Popen[bytes], floor_bytes: int, poll_seconds: float = 0.25
) -> GuardedExit:
    """Wait for the child as wait_with_peak_rss does, but kill it (SIGKILL) as soon as the
    machine's available memory falls below floor_bytes.

    Why: the baselines are plain scripts that may need more memory than the machine has
    (pandas did at 10M events). The kernel's OOM killer would pick the child (it raises its
    own oom_score_adj), but only once nothing is left to reclaim, after every other process
    on the shared machine has stalled on reclaim with it; the guard stops the child while
    some memory is still free, and the results say it did. The kernel stays the backstop for
    growth faster than one poll."""
    killed_at: int | None = None
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            child.returncode = os.waitstatus_to_exitcode(status)
            rss = _to_bytes(usage.ru_maxrss)
            return GuardedExit(child.returncode, rss, killed_at is not None, killed_at)
        available = available_bytes()
        if killed_at is None and available is not None and available < floor_bytes:
            killed_at = available
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGKILL)
        time.sleep(poll_seconds)
