"""Peak resident memory, in bytes, from the kernel's own accounting (no sampling thread).

The dbt build runs as a child process; `os.wait4` returns that one child's rusage, whose
ru_maxrss is its peak RSS (dbt-duckdb runs the SQL and the Python models inside the dbt
process, so this is the build's peak). ru_maxrss is in KiB on Linux, bytes on macOS.
"""

from __future__ import annotations

import os
import subprocess
import sys


def _to_bytes(maxrss: int) -> int:
    return maxrss if sys.platform == "darwin" else maxrss * 1024


def wait_with_peak_rss(child: subprocess.Popen[bytes]) -> tuple[int, int]:
    """Wait for the child; (exit code, its peak RSS in bytes)."""
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    return child.returncode, _to_bytes(usage.ru_maxrss)
