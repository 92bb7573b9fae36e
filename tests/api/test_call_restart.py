"""Two real bots in a call on the reference server outlive a SIGKILLed control plane."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from callbot.server.app import ReferenceServer
from callbot.server.settings import ServerSettings
from tests.api.control_plane import ServeProcess

pytestmark = pytest.mark.integration


async def bots(serve: ServeProcess) -> dict[str, dict[str, Any]]:
    response = await asyncio.to_thread(serve.request, "GET", "/bots")
    return {b["id"]: b for b in response.json()["bots"]}


async def wait_for(
    serve: ServeProcess,
    check: Callable[[dict[str, dict[str, Any]]], bool],
    timeout: float = 40.0,
) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listed = await bots(serve)
        if check(listed):
            return listed
        await asyncio.sleep(0.3)
    raise AssertionError(f"condition not met within {timeout} s: {listed}")


def received_video(bot: dict[str, Any]) -> int:
    return sum(
        t["frames"]
        for t in bot["tracks"]
        if t["direction"] == "inbound" and t["kind"] == "video"
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_bots_in_a_call_keep_it_through_a_control_plane_sigkill(
    tmp_path: Path,
) -> None:
    server = ReferenceServer(ServerSettings(host="127.0.0.1", port=0))
    await server.start()
    data = tmp_path / "data"
    data.mkdir()
    first = ServeProcess(data, mode=None)
    second: ServeProcess | None = None
    try:
        await asyncio.to_thread(first.wait_live)
        key = await asyncio.to_thread(first.create_key)
        ids = []
        for user_id in ("bot-1", "bot-2"):
            body = {"server_url": server.url, "room_id": "lobby", "user_id": user_id}
            response = await asyncio.to_thread(
                first.request, "POST", "/bots", json=body
            )
            ids.append(response.json()["id"])
        before = await wait_for(
            first,
            lambda b: all(
                x["status"] == "in_call" and received_video(x) > 0 for x in b.values()
            ),
        )

        first.kill()
        second = ServeProcess(data, mode=None)
        second.headers["Authorization"] = f"Bearer {key}"
        await asyncio.to_thread(second.wait_live)

        after = await bots(second)
        assert [after[i]["status"] for i in ids] == ["in_call", "in_call"]
        assert [after[i]["pid"] for i in ids] == [before[i]["pid"] for i in ids]
        # Media kept flowing, and its counters reach the new control plane.
        await wait_for(
            second,
            lambda b: all(
                received_video(b[i]) > received_video(before[i]) + 30 for i in ids
            ),
        )

        for bot_id in ids:
            await asyncio.to_thread(second.request, "DELETE", f"/bots/{bot_id}")
        done = await wait_for(
            second, lambda b: all(b[i]["exit_code"] is not None for i in ids), 20.0
        )
        assert [(done[i]["status"], done[i]["exit_code"]) for i in ids] == [
            ("left", 0),
            ("left", 0),
        ]
        assert not any(alive(before[i]["pid"]) for i in ids)
    finally:
        if first.process.poll() is None:
            first.kill()
        if second is not None:
            await asyncio.to_thread(second.stop)
        await server.stop()
