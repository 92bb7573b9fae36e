"""The control plane as a user runs it: `callbot serve`, real bots, a real call."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from callbot.server.app import ReferenceServer
from callbot.server.settings import ServerSettings

pytestmark = pytest.mark.integration

ROOM = "lobby"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def call_server() -> AsyncIterator[ReferenceServer]:
    async with ReferenceServer(ServerSettings(port=0)) as server:
        yield server


@pytest.fixture
async def api(tmp_path: Any) -> AsyncIterator[httpx.AsyncClient]:
    """`callbot serve` in its own process, and a client for it."""
    port = free_port()
    env = {**os.environ, "CALLBOT_DATA_DIR": str(tmp_path)}
    keys = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "callbot.cli",
        "keys",
        "create",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await keys.communicate()
    assert keys.returncode == 0
    key = out.decode().strip().splitlines()[-1]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "callbot.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}",
        headers={"Authorization": f"Bearer {key}"},
    ) as client:
        deadline = time.monotonic() + 20
        while True:
            try:
                if (await client.get("/health/ready")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "callbot serve did not get ready"
            await asyncio.sleep(0.1)
        try:
            yield client
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 20)
            except TimeoutError:
                process.kill()
                await process.wait()


async def wait_for(
    client: httpx.AsyncClient,
    bot_id: str,
    condition: Callable[[dict[str, Any]], bool],
    timeout: float,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = await client.get(f"/bots/{bot_id}")
        assert response.status_code == 200, response.text
        bot: dict[str, Any] = response.json()
        if condition(bot):
            return bot
        assert time.monotonic() < deadline, f"timed out; last view {bot}"
        await asyncio.sleep(0.2)


def frames_from(bot: dict[str, Any], user_id: str) -> int:
    return sum(
        t.get("frames", 0)
        for t in bot.get("tracks", [])
        if t.get("direction") == "inbound"
        and t.get("kind") == "video"
        and t.get("from_user_id") == user_id
    )


async def test_post_joins_delete_leaves_and_a_killed_bot_is_failed(
    call_server: ReferenceServer, api: httpx.AsyncClient
) -> None:
    ids = {}
    for user_id in ("alice", "bob"):
        response = await api.post(
            "/bots",
            json={
                "server_url": call_server.url,
                "room_id": ROOM,
                "user_id": user_id,
                "display_name": user_id.title(),
            },
        )
        assert response.status_code == 201, response.text
        assert response.json()["status"] == "starting"
        ids[user_id] = response.json()["id"]

    alice = await wait_for(api, ids["alice"], lambda b: b["status"] == "in_call", 15)
    assert alice["endpoint_id"].startswith("alice_")
    await wait_for(
        api,
        ids["alice"],
        lambda b: "bob" in b["participants"] and frames_from(b, "bob") > 5,
        20,
    )
    listed = (await api.get("/bots")).json()
    assert {b["id"] for b in listed["bots"]} >= set(ids.values())

    # DELETE: bob leaves, and alice sees him go.
    response = await api.delete(f"/bots/{ids['bob']}")
    assert response.status_code == 202
    await wait_for(api, ids["bob"], lambda b: b["status"] == "left", 10)
    await wait_for(api, ids["alice"], lambda b: "bob" not in b["participants"], 10)

    # SIGKILL of alice's process: failed within 5 s, and the API keeps serving.
    alice = (await api.get(f"/bots/{ids['alice']}")).json()
    os.kill(alice["pid"], signal.SIGKILL)
    killed = await wait_for(api, ids["alice"], lambda b: b["status"] == "failed", 5)
    assert "SIGKILL" in str(killed.get("reason") or killed.get("error"))
    assert (await api.get("/health/live")).status_code == 200
    response = await api.post(
        "/bots", json={"server_url": call_server.url, "room_id": ROOM}
    )
    assert response.status_code == 201
    await wait_for(api, response.json()["id"], lambda b: b["status"] == "in_call", 15)
