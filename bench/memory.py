"""Peak resident memory, in bytes, from the kernel's own accounting, and which dbt node was
running when it peaked.

The dbt build runs as a child process; `os.wait4` returns that one child's rusage, whose
ru_maxrss is its peak RSS (dbt-duckdb runs the SQL and the Python models inside the dbt
process, so this is the build's peak). ru_maxrss is in KiB on Linux, bytes on macOS.

ru_maxrss says how high, not when. `RssSampler` reads the child's VmRSS from /proc a few
times a second (Linux only; elsewhere it records nothing), and `peak_by_node` matches the
samples with the execute windows in dbt's run_results.json, so the benchmark can name the
models that drive the peak.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any


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


def high_water_rss(pid: int | str = "self") -> int | None:
    """VmHWM of a live process: the peak RSS of its current address space, i.e. since its
    exec. Unlike wait4's ru_maxrss, which Linux carries over from the parent's address space
    at fork/exec (a 10 MB child of a 2 GiB runner reports 2 GiB), this is the program's own.
    None where /proc does not say (not Linux, or the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


@dataclass(frozen=True)
class GuardedExit:
    exit_code: int
    peak_rss_bytes: int  # wait4's ru_maxrss: at least the parent's RSS at the fork (above)
    guard_killed: bool  # the guard, not the child or the kernel, ended it
    available_at_kill: int | None  # MemAvailable when the guard fired
    polled_peak_rss_bytes: int | None  # the child's VmHWM at the last poll before it ended


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
    polled: int | None = None
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            child.returncode = os.waitstatus_to_exitcode(status)
            rss = _to_bytes(usage.ru_maxrss)
            return GuardedExit(child.returncode, rss, killed_at is not None, killed_at, polled)
        polled = high_water_rss(child.pid) or polled
        available = available_bytes()
        if killed_at is None and available is not None and available < floor_bytes:
            killed_at = available
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGKILL)
        time.sleep(poll_seconds)


class RssSampler(threading.Thread):
    """Samples one process's RSS every `interval` seconds until it exits or stop() is called:
    `samples` holds (unix time, bytes)."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.status = Path(f"/proc/{pid}/status")
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                text = self.status.read_text()
            except OSError:
                return
            for line in text.splitlines():
                if line.startswith("VmRSS:"):
                    self.samples.append((time.time(), int(line.split()[1]) * 1024))
                    break
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


def unix_seconds(stamp: str) -> float:
    """Seconds since the epoch of one of dbt's run_results timestamps (ISO, maybe 'Z')."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def peak_by_node(
    samples: list[tuple[float, int]], run_results: dict[str, Any], top: int = 8
) -> list[dict[str, Any]]:
    """The nodes during whose execution the sampled RSS was highest, highest first:
    [{"node": name, "peak_rss_bytes": ...}]. Nodes run two at a time share a window."""
    peaks: dict[str, int] = {}
    for result in run_results.get("results", []):
        windows = [t for t in result.get("timing", []) if t.get("name") == "execute"]
        if not windows or not windows[0].get("started_at") or not windows[0].get("completed_at"):
            continue
        window = windows[0]
        start, end = unix_seconds(window["started_at"]), unix_seconds(window["completed_at"])
        inside = [rss for at, rss in samples if start <= at <= end]
        if inside:
            peaks[result["unique_id"].split(".")[-1]] = max(inside)
    ranked = sorted(peaks.items(), key=lambda kv: -kv[1])[:top]
    return [{"node": name, "peak_rss_bytes": rss} for name, rss in ranked]
