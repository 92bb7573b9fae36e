"""Processes a test left running: found by a mark in their environment.

Every test's processes (keepers, workers, served control planes) inherit the
mark; whatever still runs after the test's own fixtures are torn down is a
leak. Session-long helpers (the PostgreSQL server) start without the mark.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

# The environment variable that marks the processes of one test.
LEAK_MARK = "CALLBOT_TEST_PROCESS_MARK"


def unmarked_environment() -> dict[str, str]:
    """This process's environment without the test's mark."""
    return {k: v for k, v in os.environ.items() if k != LEAK_MARK}


def marked_processes(mark: str) -> list[int]:
    """Live processes (not zombies) whose environment carries the mark."""
    needle = f"{LEAK_MARK}={mark}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if needle not in (proc / "environ").read_bytes().split(b"\0"):
                continue
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            found.append(int(proc.name))
    return found


def kill_leftovers(mark: str, grace: float = 3.0) -> list[str]:
    """Kill the marked processes still running after ``grace`` s; describes them."""
    deadline = time.monotonic() + grace
    left = marked_processes(mark)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = marked_processes(mark)
    described = []
    for pid in left:
        with contextlib.suppress(OSError):
            words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            described.append(f"{pid}: {b' '.join(words).decode()}")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return described
