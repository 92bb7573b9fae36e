"""The bot and its socket against a scripted Phoenix server on 127.0.0.1.

Each test's server misbehaves in one way a tester found; the bot must keep
trying (with growing delays) and say in its log what really happened.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from callbot.bot.bot import Bot
from callbot.bot.config import BotConfig
from callbot.phoenix.client import Socket
from callbot.server.app import ReferenceServer
from callbot.server.settings import ServerSettings
from tests.callbot.raw_phoenix import RawClient

pytestmark = pytest.mark.integration

Script = Callable[[ServerConnection, int], Awaitable[None]]


class ScriptedServer:
    """Runs ``script(ws, connection_number)`` for each websocket; logs frames."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.joins: list[str] = []

    async def handler(self, ws: ServerConnection) -> None:
        self.connections += 1
        await self.script(ws, self.connections)

    def record(self, frame: list[Any]) -> None:
        if frame[3] == "phx_join":
            self.joins.append(frame[2])


async def reply(ws: ServerConnection, frame: list[Any], status: str, resp: Any) -> None:
    payload = {"status": status, "response": resp}
    await ws.send(json.dumps([frame[0], frame[1], frame[2], "phx_reply", payload]))


@pytest.fixture
async def start() -> AsyncIterator[Callable[[ScriptedServer], Awaitable[str]]]:
    servers = []

    async def run(scripted: ScriptedServer) -> str:
        server = await serve(scripted.handler, "127.0.0.1", 0, compression=None)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/socket"

    yield run
    for server in servers:
        server.close()
        await server.wait_closed()


def bot(url: str) -> Bot:
    return Bot(BotConfig(server_url=url, room_id="lobby", user_id="hbot"))


async def run_for(b: Bot, seconds: float) -> None:
    task = asyncio.create_task(b.run())
    await asyncio.sleep(seconds)
    b.leave()
    await asyncio.wait_for(task, 5.0)


async def test_server_close_1000_is_followed_by_a_reconnect_and_rejoin(
    start: Callable[[ScriptedServer], Awaitable[str]],
) -> None:
    async def script(ws: ServerConnection, n: int) -> None:
        if n == 1:
            await ws.close(1000)
            return
        async for raw in ws:
            frame = json.loads(raw)
            scripted.record(frame)
            if frame[3] == "phx_join":
                await reply(ws, frame, "ok", {})
            elif frame[3] == "join_call":
                await reply(ws, frame, "error", {"reason": "join_failed"})

    scripted = ScriptedServer(script)
    b = bot(await start(scripted))
    await run_for(b, 0.6)
    assert scripted.connections >= 2
    assert scripted.joins[:1] == ["call:lobby"]


async def test_phx_close_of_the_call_channel_is_followed_by_a_new_join(
    start: Callable[[ScriptedServer], Awaitable[str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def script(ws: ServerConnection, n: int) -> None:
        async for raw in ws:
            frame = json.loads(raw)
            scripted.record(frame)
            if frame[3] == "phx_join":
                await reply(ws, frame, "ok", {})
                if len(scripted.joins) == 1:
                    close = [frame[0], frame[0], frame[2], "phx_close", {}]
                    await ws.send(json.dumps(close))

    scripted = ScriptedServer(script)
    b = bot(await start(scripted))
    with caplog.at_level(logging.INFO, logger="callbot"):
        await run_for(b, 1.6)
    assert scripted.joins == ["call:lobby", "call:lobby"]
    assert "joining it again in 1.0 s" in caplog.text


async def test_join_call_failing_with_the_channel_says_the_channel_rejoins(
    start: Callable[[ScriptedServer], Awaitable[str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def script(ws: ServerConnection, n: int) -> None:
        async for raw in ws:
            frame = json.loads(raw)
            scripted.record(frame)
            if frame[3] == "phx_join":
                await reply(ws, frame, "ok", {})
            elif frame[3] == "join_call":
                error = [frame[0], frame[0], frame[2], "phx_error", {}]
                await ws.send(json.dumps(error))

    scripted = ScriptedServer(script)
    b = bot(await start(scripted))
    with caplog.at_level(logging.INFO, logger="callbot"):
        await run_for(b, 0.4)
    assert "when the channel has rejoined" in caplog.text
    assert "retrying in" not in caplog.text


async def test_a_frame_over_the_limit_is_named_as_the_cause(
    start: Callable[[ScriptedServer], Awaitable[str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def script(ws: ServerConnection, n: int) -> None:
        if n == 1:
            big = json.dumps([None, None, "call:lobby", "video_snapshot", "x" * 4096])
            await ws.send(big)
        await asyncio.sleep(0.5)

    scripted = ScriptedServer(script)
    socket = Socket(await start(scripted), max_frame_size=2048)
    with caplog.at_level(logging.INFO, logger="callbot.phoenix"):
        await socket.connect()
        for _ in range(100):
            if scripted.connections >= 2:
                break
            await asyncio.sleep(0.01)
        await socket.close()
    assert "larger than the limit of 2048 bytes" in caplog.text
    assert "code 1006" not in caplog.text
    assert scripted.connections >= 2


async def test_a_server_that_drops_each_connection_is_retried_slowly(
    start: Callable[[ScriptedServer], Awaitable[str]],
) -> None:
    async def script(ws: ServerConnection, n: int) -> None:
        await ws.close(1011)

    scripted = ScriptedServer(script)
    socket = Socket(await start(scripted))
    await socket.connect()
    await asyncio.sleep(1.0)
    await socket.close()
    # 10+50+100+150+200+250 ms fit in a second: about 7 connections, not 70.
    assert 4 <= scripted.connections <= 9


async def test_a_bot_that_never_connected_ends_failed_cannot_connect() -> None:
    import socket as socketlib

    # A loopback port nobody listens on.
    with socketlib.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    reports: list[dict[str, Any]] = []
    config = BotConfig(
        server_url=f"ws://127.0.0.1:{port}/socket", room_id="lobby", duration=0.5
    )
    bot = Bot(config, on_report=reports.append)
    await asyncio.wait_for(bot.run(), 5)
    assert (bot.status, bot.reason) == ("failed", "cannot_connect")
    statuses = [r["status"] for r in reports if r.get("type") == "status"]
    assert statuses == ["connecting", "failed"]


async def test_reference_server_drops_only_a_too_deep_frame(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = ReferenceServer(ServerSettings(port=0))
    await server.start()
    try:
        client = await RawClient.open(server.url)
        deep = "[" * 100_000 + "]" * 100_000
        with caplog.at_level(logging.WARNING, logger="callbot.server"):
            await client.ws.send(f'[null,"1","phoenix","heartbeat",{deep}]')
            await client.send(None, "2", "phoenix", "heartbeat", {})
            answer = await client.reply("2")
        await client.close()
    finally:
        await server.stop()
    assert answer[4] == {"status": "ok", "response": {}}
    (record,) = caplog.records
    assert "too deeply" in record.getMessage()
    assert len(record.getMessage()) < 400
