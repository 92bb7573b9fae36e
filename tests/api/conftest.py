"""Database fixtures: every store test runs on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.leaks import LEAK_MARK, kill_leftovers
from tests.api.postgres import fresh_database, postgres_server


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


@pytest.fixture(autouse=True)
def no_leaked_processes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every process a test starts (keepers, workers, servers) ends with it."""
    mark = uuid.uuid4().hex
    monkeypatch.setenv(LEAK_MARK, mark)
    yield
    left = kill_leftovers(mark)
    if left:
        pytest.fail("processes left running:\n" + "\n".join(left))
