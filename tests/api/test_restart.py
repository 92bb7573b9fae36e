"""A control plane killed with SIGKILL loses nothing: a new one finds its bots."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.api.control_plane import ServeProcess

pytestmark = pytest.mark.integration

BODY = {"server_url": "ws://127.0.0.1:4000/socket", "room_id": "lobby"}


def wait_for(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"condition not met within {timeout} s")


def bots(serve: ServeProcess) -> dict[str, dict[str, Any]]:
    listed = serve.request("GET", "/bots").json()["bots"]
    return {b["id"]: b for b in listed}


def frames(bot: dict[str, Any]) -> int:
    return sum(t["frames"] for t in bot["tracks"] if t["direction"] == "outbound")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_bots_outlive_a_sigkilled_control_plane_and_the_next_one_stops_them(
    tmp_path: Path, database_url: str
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    first = ServeProcess(data, CALLBOT_DATABASE_URL=database_url)
    second: ServeProcess | None = None
    try:
        first.wait_live()
        key = first.create_key()
        ids = [
            first.request("POST", "/bots", json={**BODY, "user_id": u}).json()["id"]
            for u in ("bot-1", "bot-2")
        ]
        wait_for(lambda: all(b["status"] == "in_call" for b in bots(first).values()))
        before = bots(first)

        first.kill()
        pids = [before[i]["pid"] for i in ids]
        assert all(alive(pid) for pid in pids)

        second = ServeProcess(data, CALLBOT_DATABASE_URL=database_url)
        second.headers["Authorization"] = f"Bearer {key}"
        second.wait_live()
        after = bots(second)
        assert sorted(after) == sorted(ids)
        assert [after[i]["status"] for i in ids] == ["in_call", "in_call"]
        assert [after[i]["pid"] for i in ids] == pids
        # The reports go on reaching the new control plane.
        wait_for(
            lambda: all(frames(b) > frames(before[i]) for i, b in bots(second).items())
        )

        for bot_id in ids:
            assert second.request("DELETE", f"/bots/{bot_id}").status_code == 202

        def exited() -> dict[str, dict[str, Any]] | None:
            listed = bots(second)
            return (
                listed
                if all(b["exit_code"] is not None for b in listed.values())
                else None
            )

        done = wait_for(exited)
        assert [done[i]["status"] for i in ids] == ["left", "left"]
        assert [done[i]["exit_code"] for i in ids] == [0, 0]
        assert [h["status"] for h in done[ids[0]]["history"]] == [
            "starting",
            "connecting",
            "in_call",
            "leaving",
            "left",
        ]
        assert not any(alive(pid) for pid in pids)
    finally:
        if first.process.poll() is None:
            first.kill()
        if second is not None:
            second.stop()
