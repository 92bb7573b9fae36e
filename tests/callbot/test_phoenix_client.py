"""The asyncio Phoenix client against a small Phoenix-speaking server."""

from __future__ import annotations

import asyncio
import logging
import socket as stdsocket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from callbot.errors import ChannelError, PushTimeout, ReplyError, SocketClosed
from callbot.phoenix.client import Channel, ChannelState, Socket
from callbot.phoenix.frames import Message, decode

pytestmark = pytest.mark.integration

PARAMS = {"user_id": "u-42", "user_info": {"name": "Bot 42"}}


@dataclass
class Join:
    topic: str
    join_ref: str | None
    params: Any


@dataclass
class PhoenixServer:
    """Enough of Phoenix 1.8.5's socket and channel rules for the client."""

    server: Server | None = None
    connections: list[ServerConnection] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    joins: list[Join] = field(default_factory=list)
    heartbeats: list[Message] = field(default_factory=list)
    received: list[Message] = field(default_factory=list)
    answer_heartbeats: bool = True

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/socket"

    async def handle(self, ws: ServerConnection) -> None:
        self.connections.append(ws)
        self.paths.append(ws.request.path if ws.request else "")
        self.headers.append(dict(ws.request.headers) if ws.request else {})
        joined: dict[str, str | None] = {}
        try:
            async for text in ws:
                await self.on_frame(ws, joined, decode(text))
        except ConnectionClosed:
            pass

    async def on_frame(
        self, ws: ServerConnection, joined: dict[str, str | None], msg: Message
    ) -> None:
        self.received.append(msg)

        async def send(
            join_ref: str | None, ref: str | None, event: str, payload: Any
        ) -> None:
            await ws.send(Message(join_ref, ref, msg.topic, event, payload).encode())

        async def reply(status: str, response: Any) -> None:
            await send(
                msg.join_ref,
                msg.ref,
                "phx_reply",
                {"status": status, "response": response},
            )

        if msg.topic == "phoenix":
            self.heartbeats.append(msg)
            if self.answer_heartbeats:
                await send(None, msg.ref, "phx_reply", {"status": "ok", "response": {}})
            return

        if msg.event == "phx_join":
            self.joins.append(Join(msg.topic, msg.join_ref, msg.payload))
            if msg.topic.startswith("room:full"):
                await reply("error", {"reason": "call_full"})
                return
            if msg.topic in joined:
                old = joined[msg.topic]
                await send(old, old, "phx_close", {})
            joined[msg.topic] = msg.join_ref
            await reply("ok", {"params": msg.payload})
            return

        if msg.event == "phx_leave":
            old = joined.pop(msg.topic, None)
            await reply("ok", {})
            if old is not None:
                await send(old, old, "phx_close", {})
            return

        # Phoenix 1.8.5 drops frames of another channel instance silently.
        if msg.topic not in joined or joined[msg.topic] != msg.join_ref:
            return

        match msg.event:
            case "echo":
                await reply("ok", msg.payload)
            case "refuse":
                await reply("error", {"reason": "not_in_call"})
            case "announce":
                await send(None, None, "news", {"n": 1})
                await send(msg.join_ref, None, "news", {"n": 2})
                await send(msg.join_ref, None, "news", {"n": 3})
            case "crash":
                joined.pop(msg.topic)
                await send(msg.join_ref, msg.join_ref, "phx_error", {})
            case _:
                pass  # a noreply handler

    def drop_all(self) -> None:
        """Cut every connection without a close frame, as a network loss does."""
        for ws in self.connections:
            ws.transport.abort()


@pytest.fixture
async def phx() -> AsyncIterator[PhoenixServer]:
    state = PhoenixServer()
    async with serve(state.handle, "127.0.0.1", 0) as server:
        state.server = server
        yield state


async def until(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


def record_states(channel: Channel) -> list[tuple[ChannelState, Any]]:
    states: list[tuple[ChannelState, Any]] = []
    channel.on_state(lambda state, info: states.append((state, info)))
    return states


def fast_socket(url: str, **kwargs: Any) -> Socket:
    options: dict[str, Any] = {
        "heartbeat_interval": 5.0,
        "reconnect_after": lambda tries: 0.02,
        "rejoin_after": lambda tries: 0.05,
        "push_timeout": 2.0,
    }
    options.update(kwargs)
    return Socket(url, **options)


async def test_join_push_and_the_upgrade_request(phx: PhoenixServer) -> None:
    sock = fast_socket(phx.url, params={"token": "abc"})
    await sock.connect()
    try:
        channel = sock.channel("room:a", PARAMS)
        response = await channel.join()
        assert response == {"params": PARAMS}
        assert channel.state is ChannelState.JOINED
        assert channel.join_ref == phx.joins[0].join_ref

        assert await channel.push("echo", {"x": [1, 2]}) == {"x": [1, 2]}
        assert phx.received[-1].join_ref == channel.join_ref

        assert phx.paths == ["/socket/websocket?vsn=2.0.0&token=abc"]
        names = {name.lower() for name in phx.headers[0]}
        assert "origin" not in names
        assert "sec-websocket-extensions" not in names
    finally:
        await sock.close()


async def test_refused_join_and_push_errors(phx: PhoenixServer) -> None:
    sock = fast_socket(phx.url)
    await sock.connect()
    try:
        full = sock.channel("room:full", PARAMS)
        with pytest.raises(ReplyError) as refused:
            await full.join()
        assert refused.value.reason == "call_full"
        assert full.state is ChannelState.ERRORED
        await full.leave()
        assert full.state is ChannelState.CLOSED

        channel = sock.channel("room:a", PARAMS)
        await channel.join()
        with pytest.raises(ReplyError) as error:
            await channel.push("refuse", {})
        assert error.value.reason == "not_in_call"

        with pytest.raises(PushTimeout):
            await channel.push("silent", {}, timeout=0.1)
        assert sock.protocol.pending_count == 0
        # The socket still works after a timeout.
        assert await channel.push("echo", {"after": True}) == {"after": True}
    finally:
        await sock.close()


async def test_server_pushes_reach_handlers_despite_a_failing_one(
    phx: PhoenixServer, caplog: pytest.LogCaptureFixture
) -> None:
    sock = fast_socket(phx.url)
    await sock.connect()
    try:
        channel = sock.channel("room:a", PARAMS)
        await channel.join()
        seen: list[Any] = []
        later: list[Any] = []

        def broken(payload: Any) -> None:
            raise RuntimeError("owner bug")

        async def async_handler(payload: Any) -> None:
            later.append(payload)

        channel.on("news", broken)
        channel.on("news", seen.append)
        channel.on("news", async_handler)
        with caplog.at_level(logging.ERROR, logger="callbot.phoenix.client"):
            channel.push_nowait("announce", {})
            await until(lambda: len(seen) == 3 and len(later) == 3)
        assert seen == [{"n": 1}, {"n": 2}, {"n": 3}]
        assert "handler for news on room:a failed" in caplog.text
        assert await channel.push("echo", {}) == {}
    finally:
        await sock.close()


async def test_socket_drop_reconnects_and_rejoins_with_the_same_params(
    phx: PhoenixServer,
) -> None:
    sock = fast_socket(phx.url)
    await sock.connect()
    try:
        channel = sock.channel("room:a", PARAMS)
        states = record_states(channel)
        await channel.join()
        first_ref = channel.join_ref

        phx.drop_all()
        await until(lambda: len(states) == 3)
        assert [state for state, _ in states] == [
            ChannelState.JOINED,
            ChannelState.ERRORED,
            ChannelState.JOINED,
        ]
        assert states[1][1] == {"reason": "socket_lost", "response": None}
        assert states[2][1] == {"params": PARAMS}
        assert len(phx.connections) == 2
        assert [j.params for j in phx.joins] == [PARAMS, PARAMS]
        assert phx.joins[1].join_ref == channel.join_ref != first_ref
        assert sock.connected
        assert await channel.push("echo", {"again": 1}) == {"again": 1}
    finally:
        await sock.close()


async def test_phx_error_rejoins_on_a_new_join_ref(phx: PhoenixServer) -> None:
    sock = fast_socket(phx.url)
    await sock.connect()
    try:
        channel = sock.channel("room:a", PARAMS)
        states = record_states(channel)
        await channel.join()
        first_ref = channel.join_ref

        channel.push_nowait("crash", {})
        await until(lambda: len(states) == 3)
        assert [state for state, _ in states] == [
            ChannelState.JOINED,
            ChannelState.ERRORED,
            ChannelState.JOINED,
        ]
        assert states[1][1] == {"reason": "phx_error", "response": None}
        assert len(phx.connections) == 1
        assert phx.joins[1].params == PARAMS
        assert phx.joins[1].join_ref == channel.join_ref != first_ref
        assert await channel.push("echo", {"ok": True}) == {"ok": True}
    finally:
        await sock.close()


async def test_heartbeats_and_a_heartbeat_timeout(phx: PhoenixServer) -> None:
    sock = fast_socket(phx.url, heartbeat_interval=0.05)
    await sock.connect()
    try:
        channel = sock.channel("room:a", PARAMS)
        states = record_states(channel)
        await channel.join()
        await until(lambda: len(phx.heartbeats) >= 3)
        assert all(
            h.join_ref is None and h.event == "heartbeat" for h in phx.heartbeats
        )
        assert len({h.ref for h in phx.heartbeats}) == len(phx.heartbeats)

        # A server that stops answering is a dead link: reconnect and rejoin.
        phx.answer_heartbeats = False
        await until(lambda: len(phx.connections) == 2)
        phx.answer_heartbeats = True
        await until(lambda: len(states) == 3)
        assert states[1] == (
            ChannelState.ERRORED,
            {"reason": "socket_lost", "response": None},
        )
        assert states[2][0] is ChannelState.JOINED
    finally:
        await sock.close()


async def test_close_fails_waiting_pushes_and_does_not_reconnect(
    phx: PhoenixServer,
) -> None:
    sock = fast_socket(phx.url)
    await sock.connect()
    channel = sock.channel("room:a", PARAMS)
    states = record_states(channel)
    await channel.join()

    waiting = asyncio.create_task(channel.push("silent", {}))
    await until(lambda: phx.received[-1].event == "silent")
    await sock.close()

    with pytest.raises(SocketClosed):
        await waiting
    assert states[-1] == (ChannelState.CLOSED, {"reason": "socket_closed"})
    assert not sock.connected
    await asyncio.sleep(0.1)
    assert len(phx.connections) == 1
    with pytest.raises(ChannelError):
        await channel.push("echo", {})
    with pytest.raises(SocketClosed):
        await channel.join()


async def test_connect_to_nothing_raises_socket_closed() -> None:
    with stdsocket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sock = Socket(f"ws://127.0.0.1:{port}/socket")
    with pytest.raises(SocketClosed):
        await sock.connect()


async def test_leave_sends_phx_leave_and_closes(phx: PhoenixServer) -> None:
    sock = fast_socket(phx.url)
    await sock.connect()
    try:
        channel = sock.channel("room:a", PARAMS)
        states = record_states(channel)
        await channel.join()
        join_ref = channel.join_ref

        await asyncio.gather(channel.leave(), channel.leave())
        leave = phx.received[-1]
        assert (leave.event, leave.join_ref) == ("phx_leave", join_ref)
        assert channel.state is ChannelState.CLOSED
        assert states[-1] == (ChannelState.CLOSED, {"reason": "left"})

        # A closed channel object can join again, as a new instance.
        await channel.join()
        assert channel.join_ref != join_ref
    finally:
        await sock.close()
