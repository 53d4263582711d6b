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

import os
import subprocess
import sys
import threading
import time
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


def _unix(stamp: str) -> float:
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
        start, end = _unix(windows[0]["started_at"]), _unix(windows[0]["completed_at"])
        inside = [rss for at, rss in samples if start <= at <= end]
        if inside:
            peaks[result["unique_id"].split(".")[-1]] = max(inside)
    ranked = sorted(peaks.items(), key=lambda kv: -kv[1])[:top]
    return [{"node": name, "peak_rss_bytes": rss} for name, rss in ranked]
