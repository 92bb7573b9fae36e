"""Database fixtures: every store test runs on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.postgres import fresh_database, postgres_server

# The environment variable that marks the processes of one test.
LEAK_MARK = "CALLBOT_TEST_PROCESS_MARK"


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)]
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'callbot.db'}"
    admin: str = request.getfixturevalue("postgres_admin_url")
    return fresh_database(admin)


def _marked_processes(mark: str) -> list[int]:
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


@pytest.fixture(autouse=True)
def no_leaked_processes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every process a test starts (keepers, workers, servers) ends with it.

    The test's processes inherit a mark in their environment; whatever still
    runs after the test's own fixtures are torn down is killed and fails it.
    """
    mark = uuid.uuid4().hex
    monkeypatch.setenv(LEAK_MARK, mark)
    yield
    deadline = time.monotonic() + 3.0
    left = _marked_processes(mark)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = _marked_processes(mark)
    if not left:
        return
    described = []
    for pid in left:
        with contextlib.suppress(OSError):
            words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            described.append(f"{pid}: {b' '.join(words).decode()}")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    pytest.fail("processes left running:\n" + "\n".join(described))
