"""The reference server's call channel on the wire (call-channel.md §1 to §4).

Raw V2 frames against a real :class:`ReferenceServer` on 127.0.0.1, so that
every reply, duplicate and dropped frame is seen exactly as a client sees it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from callbot.errors import ReplyError
from callbot.phoenix.client import Socket
from callbot.server.app import ReferenceServer
from callbot.server.call_server import CallServer
from callbot.server.clock import ManualClock
from callbot.server.settings import RoomConfig, ServerSettings
from tests.callbot.raw_phoenix import Frame, RawClient

pytestmark = pytest.mark.integration

ROOMS = [
    RoomConfig(name="r1"),
    RoomConfig(name="team", public=False, owner="olga", members=["mia"]),
]
NOT_IN_CALL = {"status": "error", "response": {"reason": "not_in_call"}}
OK = {"status": "ok", "response": {}}
PARTICIPANT_FIELDS = {
    "user_id",
    "endpoint_id",
    "user_info",
    "joined_at",
    "audio_enabled",
    "video_enabled",
    "quality_level",
    "speaking",
    "tier",
    "attention_level",
}
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")

ServerMaker = Callable[..., Any]


@dataclass
class Member:
    """One user's channel on its own socket."""

    client: RawClient
    user_id: str
    topic: str
    join_ref: str

    async def request(self, event: str, payload: Any) -> dict[str, Any]:
        return await self.client.request(self.join_ref, self.topic, event, payload)

    async def push(self, event: str, payload: Any) -> str:
        return await self.client.push(self.join_ref, self.topic, event, payload)

    async def barrier(self) -> None:
        await self.client.barrier(self.join_ref, self.topic)

    def pushes(self, event: str) -> list[Frame]:
        return self.client.drain(event)


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as stack:
        yield stack


@pytest.fixture
def make_server(stack: AsyncExitStack) -> ServerMaker:
    async def make(**settings: Any) -> ReferenceServer:
        server = ReferenceServer(
            ServerSettings(port=0, rooms=ROOMS, **settings), ManualClock()
        )
        await server.start()
        stack.push_async_callback(server.stop)
        return server

    return make


@pytest.fixture
async def server(make_server: ServerMaker) -> ReferenceServer:
    result: ReferenceServer = await make_server()
    return result


async def open_client(server: ReferenceServer, stack: AsyncExitStack) -> RawClient:
    client = await RawClient.open(server.url)
    stack.push_async_callback(client.close)
    return client


async def member(
    server: ReferenceServer,
    stack: AsyncExitStack,
    user_id: str,
    *,
    room: str = "r1",
    join_call: bool = True,
) -> Member:
    client = await open_client(server, stack)
    topic = f"call:{room}"
    join_ref, reply = await client.join(topic, {"user_id": user_id})
    assert reply[4]["status"] == "ok", reply
    joined = Member(client, user_id, topic, join_ref)
    if join_call:
        assert (await joined.request("join_call", {}))["status"] == "ok"
    return joined


def call_of(server: ReferenceServer, room: str = "r1") -> CallServer:
    call = server.call(room)
    assert call is not None, f"no call in {room}"
    return call


async def settle(*members: Member) -> None:
    for m in members:
        await m.barrier()


# -- join ----------------------------------------------------------------------


async def refused(client: RawClient, topic: str, params: Any) -> Frame:
    join_ref, reply = await client.join(topic, params)
    assert reply[0] == join_ref and reply[2] == topic
    return reply


async def test_join_error_reasons_exactly_as_the_real_server(
    server: ReferenceServer, stack: AsyncExitStack
) -> None:
    client = await open_client(server, stack)

    def error(reason: str) -> dict[str, Any]:
        return {"status": "error", "response": {"reason": reason}}

    assert (await refused(client, "call:r1", {}))[4] == error("user_id required")
    assert (await refused(client, "call:r1", {"user_id": None}))[4] == error(
        "user_id required"
    )
    assert (await refused(client, "call:nowhere", {"user_id": "u1"}))[4] == error(
        "unauthorized"
    )
    assert (await refused(client, "call:team", {"user_id": "stranger"}))[4] == error(
        "not_room_member"
    )
    # lobby needs no room, but only for a string user_id
    assert (await refused(client, "call:lobby", {"user_id": 42}))[4] == error(
        "unauthorized"
    )

    # a refused join leaves no channel behind
    ref = await client.push("9", "call:r1", "get_participants", {})
    assert await client.reply(ref) == [
        None,
        ref,
        "call:r1",
        "phx_reply",
        {"status": "error", "response": {"reason": "unmatched topic"}},
    ]


@pytest.mark.parametrize(
    ("topic", "user_id"),
    [("call:team", "olga"), ("call:team", "mia"), ("call:lobby", "anyone")],
)
async def test_owner_members_and_lobby_are_admitted(
    server: ReferenceServer, stack: AsyncExitStack, topic: str, user_id: str
) -> None:
    client = await open_client(server, stack)
    join_ref, reply = await client.join(topic, {"user_id": user_id})
    assert reply == [
        join_ref,
        join_ref,
        topic,
        "phx_reply",
        {"status": "ok", "response": {"ice_servers": []}},
    ]


async def test_join_reply_carries_the_configured_ice_servers(
    make_server: ServerMaker, stack: AsyncExitStack
) -> None:
    ice = [
        {"urls": "stun:127.0.0.1:3478"},
        {"urls": ["turn:127.0.0.1:3478"], "username": "u", "credential": "p"},
    ]
    server = await make_server(ice_servers=ice)
    client = await open_client(server, stack)
    _, reply = await client.join("call:r1", {"user_id": "u1", "user_info": {}})
    assert reply[4] == {"status": "ok", "response": {"ice_servers": ice}}


async def test_channel_join_limit_counts_in_call_participants_only(
    server: ReferenceServer, stack: AsyncExitStack
) -> None:
    # 21 channels join while nobody is in the call; all may join_call later
    members = [await member(server, stack, f"u{i}", join_call=False) for i in range(21)]
    for m in members:
        assert (await m.request("join_call", {}))["status"] == "ok"
    call = server.call("r1")
    assert call is not None and len(call.participants) == 21

    late = await open_client(server, stack)
    reply = await refused(late, "call:r1", {"user_id": "late"})
    assert reply[4] == {"status": "error", "response": {"reason": "call_full"}}

    # still 20 in the call after one leaves: still full
    assert await members[0].request("leave_call", {}) == OK
    assert (await refused(late, "call:r1", {"user_id": "late"}))[4]["response"] == {
        "reason": "call_full"
    }
    assert await members[1].request("leave_call", {}) == OK
    _, reply = await late.join("call:r1", {"user_id": "late"})
    assert reply[4]["status"] == "ok"


# -- join_call and the roster ---------------------------------------------------


async def test_join_call_reply_then_participant_joined_twice_to_everyone(
    server: ReferenceServer, stack: AsyncExitStack
) -> None:
    watcher = await member(server, stack, "watcher", join_call=False)
    client = await open_client(server, stack)
    join_ref, _ = await client.join(
        "call:r1", {"user_id": "u-42", "user_info": {"name": "Bot 42"}}
    )
    joiner = Member(client, "u-42", "call:r1", join_ref)

    ref = await joiner.push("join_call", {})
    await settle(joiner, watcher)

    # on the joiner's socket: the reply, then its own participant_joined twice
    frames = client.drain()
    assert [(f[1], f[3]) for f in frames if f[3] != "phx_reply" or f[1] == ref] == [
        (ref, "phx_reply"),
        (None, "participant_joined"),
        (None, "participant_joined"),
    ]
    reply = next(f for f in frames if f[1] == ref)
    response = reply[4]["response"]
    assert reply[4]["status"] == "ok"
    assert re.fullmatch(r"u-42_\d+", response["endpoint_id"])
    entry = response["participants"]["u-42"]
    assert set(entry) == PARTICIPANT_FIELDS
    assert entry["user_info"] == {"name": "Bot 42"}
    assert ISO_UTC.match(entry["joined_at"])
    assert (entry["tier"], entry["attention_level"], entry["quality_level"]) == (
        "viewer",
        "high",
        "high",
    )
    assert entry["speaking"] is False

    six = {k: entry[k] for k in list(entry)[:6]}
    assert set(six) == PARTICIPANT_FIELDS - {
        "quality_level",
        "speaking",
        "tier",
        "attention_level",
    }
    mine = [f for f in frames if f[3] == "participant_joined"]
    theirs = watcher.pushes("participant_joined")
    for m, joined in ((joiner, mine), (watcher, theirs)):
        assert joined == [[m.join_ref, None, "call:r1", "participant_joined", six]] * 2


async def test_get_participants_needs_no_call(
    server: ReferenceServer, stack: AsyncExitStack
) -> None:
    watcher = await member(server, stack, "watcher", join_call=False)
    assert await watcher.request("get_participants", {}) == {
        "status": "ok",
        "response": {"participants": {}},
    }
    bob = await member(server, stack, "bob")
    table = (await watcher.request("get_participants", {}))["response"]["participants"]
    assert list(table) == ["bob"]
    assert table["bob"]["endpoint_id"] == call_of(server).endpoint_of("bob")
    assert (await bob.request("join_call", {}))["status"] == "ok"


# -- preconditions -------------------------------------------------------------


NEEDS_CALL = [
    ("leave_call", {}),
    ("media_event", {"data": '{"type":"connect","data":{"metadata":null}}'}),
    ("toggle_audio", {"enabled": False}),
    ("toggle_video", {"enabled": False}),
    ("set_quality", {"quality": "low"}),
    ("request_quality_tier", {"target_user_id": "bob", "tier": "active"}),
    ("speaking_state", {"speaking": True}),
    ("attention_state", {"level": "low"}),
    ("video_snapshot", {"data": "AAAA", "width": 320, "height": 240, "timestamp": 1}),
]


@pytest.mark.parametrize(
    ("event", "payload"), NEEDS_CALL, ids=[e for e, _ in NEEDS_CALL]
)
async def test_events_before_join_call_get_not_in_call(
    server: ReferenceServer, stack: AsyncExitStack, event: str, payload: Any
) -> None:
    bob = await member(server, stack, "bob")
    alice = await member(server, stack, "alice", join_call=False)
    await settle(bob)
    bob.client.drain()

    assert await alice.request(event, payload) == NOT_IN_CALL

    # nothing reached the call
    await settle(alice, bob)
    assert bob.client.drain() == []
    assert list(call_of(server).participants) == ["bob"]


async def test_after_leave_call_events_are_not_in_call_again(
    server: ReferenceServer, stack: AsyncExitStack
) -> None:
    alice = await member(server, stack, "alice")
    assert await alice.request("leave_call", {}) == OK
    assert await alice.request("toggle_audio", {"enabled": True}) == NOT_IN_CALL
    assert await alice.request("leave_call", {}) == NOT_IN_CALL


# -- the eleven events and their pushes -----------------------------------------


async def test_toggles_broadcast_the_value_as_sent_to_everyone(
    server: ReferenceServer, stack: AsyncExitStack
) -> None:
    alice = await member(server, stack, "alice")
    bob = await member(server, stack, "bob")
    watcher = await member(server, stack, "watcher", join_call=False)
    await settle(alice, bob, watcher)
    for m in (alice, bob, watcher):
        m.client.drain()

    assert await alice.request("toggle_audio", {"enabled": "off"}) == OK
    assert await alice.request("toggle_video", {"enabled": False}) == OK
    await settle(alice, bob, watcher)

    for m in (alice, bob, watcher):
        assert [f[4] for f in m.pushes("participant_audio_changed")] == [
            {"user_id": "alice", "audio_enabled": "off"}
        ] * 2
        assert [f[4] for f in m.pushes("participant_video_changed")] == [
            {"user_id": "alice", "video_enabled": False}
        ] * 2
    table = (await bob.request("get_participants", {}))["response"]["participants"]
    assert table["alice"]["audio_enabled"] is True  # toggles are never recorded


async def test_set_quality_ignores_its_argument(
    server: ReferenceServer, stack: AsyncExitStack
) -> None:
    alice = await member(server, stack, "alice")
    bob = await member(server, stack, "bob")
    await settle(alice, bob)
    bob.client.drain()

    assert await alice.request("set_quality", {"quality": "low"}) == OK
    await settle(bob)
    assert [f[4] for f in bob.pushes("quality_changed")] == [{"quality": "high"}] * 2
    assert call_of(server).quality_profile == "low"


async def test_speaking_and_attention_have_no_reply(
    server: ReferenceServer, stack: AsyncExitStack
) -> None:
    alice = await member(server, stack, "alice")
    bob = await member(server, stack, "bob")
    await settle(alice, bob)
    for m in (alice, bob):
        m.client.drain()

    speaking_ref = await alice.push("speaking_state", {"speaking": True})
    attention_ref = await bob.push("attention_state", {"level": "low"})
    await settle(alice, bob)

    assert not any(f[1] == speaking_ref for f in alice.client.frames)
    assert not any(f[1] == attention_ref for f in bob.client.frames)
    for m in (alice, bob):
        assert [f[4] for f in m.pushes("participant_speaking")] == [
            {"user_id": "alice", "speaking": True}
        ] * 2
        tiers = [f[4] for f in m.pushes("tier_changed")]
        assert tiers.count({"user_id": "alice", "tier": "active"}) == 2
        assert tiers.count({"user_id": "bob", "tier": "idle"}) == 2


async def test_video_snapshot_reaches_everyone_but_the_sending_user(
    server: ReferenceServer, stack: AsyncExitStack
) -> None:
    alice = await member(server, stack, "alice")
    alice_tab = await member(server, stack, "alice", join_call=False)
    bob = await member(server, stack, "bob")
    watcher = await member(server, stack, "watcher", join_call=False)
    everyone = (alice, alice_tab, bob, watcher)
    await settle(*everyone)
    for m in everyone:
        m.client.drain()

    snapshot = {"data": "/9j/4AAQ", "width": 320, "height": 240, "timestamp": 17}
    ref = await alice.push("video_snapshot", snapshot)
    await settle(*everyone)

    assert not any(f[1] == ref for f in alice.client.frames)  # no reply
    for m in (alice, alice_tab):
        assert m.pushes("video_snapshot") == []
    for m in (bob, watcher):
        frames = m.pushes("video_snapshot")
        assert [f[4] for f in frames] == [{"user_id": "alice", **snapshot}] * 2
        assert frames[0][0] == m.join_ref


async def test_duplicate_pushes_switched_off_arrive_once(
    make_server: ServerMaker, stack: AsyncExitStack
) -> None:
    server = await make_server(duplicate_pushes=False)
    alice = await member(server, stack, "alice")
    bob = await member(server, stack, "bob")
    await alice.request("toggle_audio", {"enabled": False})
    await alice.push(
        "video_snapshot", {"data": "", "width": 1, "height": 1, "timestamp": 1}
    )
    await alice.push("speaking_state", {"speaking": True})
    await settle(alice, bob)

    for event in (
        "participant_joined",
        "participant_audio_changed",
        "participant_speaking",
        "video_snapshot",
        "tier_changed",
    ):
        assert len(bob.pushes(event)) == 1, event
    assert len(alice.pushes("participant_joined")) == 2  # its own and bob's


async def test_request_quality_tier_crashes_every_receiving_channel(
    server: ReferenceServer, stack: AsyncExitStack
) -> None:
    alice = await member(server, stack, "alice")
    bob = await member(server, stack, "bob")
    carol = await member(server, stack, "carol", join_call=False)
    await settle(alice, bob, carol)
    for m in (alice, bob, carol):
        m.client.drain()

    request = {"target_user_id": "bob", "tier": "active"}
    assert await alice.request("request_quality_tier", request) == OK

    expected = {"from_user_id": "alice", **request}
    for m in (bob, carol):
        push = await m.client.take(lambda f: f[3] == "quality_tier_request")
        assert push == [None, None, "call:r1", "quality_tier_request", expected]
        error = await m.client.take(lambda f: f[3] == "phx_error")
        assert error == [m.join_ref, m.join_ref, "call:r1", "phx_error", {}]
        assert m.client.drain("quality_tier_request") == []

    # bob's channel left the call on its way down; alice was not pushed to
    left = await alice.client.take(lambda f: f[3] == "participant_left")
    assert left[4] == {"user_id": "bob"}
    await settle(alice)
    assert alice.pushes("quality_tier_request") == []
    assert list(call_of(server).participants) == ["alice"]


async def test_request_quality_tier_crash_switched_off(
    make_server: ServerMaker, stack: AsyncExitStack
) -> None:
    server = await make_server(quality_tier_request_crashes=False)
    alice = await member(server, stack, "alice")
    bob = await member(server, stack, "bob")
    request = {"target_user_id": "bob", "tier": "recent"}
    assert await alice.request("request_quality_tier", request) == OK
    await settle(alice, bob)
    assert [f[4] for f in bob.pushes("quality_tier_request")] == [
        {"from_user_id": "alice", **request}
    ]
    assert bob.pushes("phx_error") == []
    assert sorted(call_of(server).participants) == ["alice", "bob"]


# -- join_ref, crashes ------------------------------------------------------------


async def test_frame_with_null_join_ref_is_dropped_silently(
    server: ReferenceServer, stack: AsyncExitStack
) -> None:
    client = await open_client(server, stack)
    join_ref, reply = await client.join("call:r1", {"user_id": "u1"})
    assert join_ref == "1" and reply[4]["status"] == "ok"
    alice = Member(client, "u1", "call:r1", join_ref)
    assert client.next_ref() == "2"  # the dropped frame's ref
    assert (await alice.request("join_call", {}))["status"] == "ok"
    await settle(alice)
    client.drain()

    connect = {"data": '{"type":"connect","data":{"metadata":{}}}'}
    await client.send(None, "2", "call:r1", "media_event", connect)
    await client.send("7", "2", "call:r1", "toggle_audio", {"enabled": True})
    await settle(alice)
    assert client.drain() == []

    # the same frame with the join_ref reaches the endpoint
    await client.send("1", "8", "call:r1", "media_event", connect)
    pushed = await client.take(lambda f: f[3] == "media_event")
    assert '"type": "connected"' in pushed[4]["data"]


async def test_null_join_ref_accepted_when_not_strict(
    make_server: ServerMaker, stack: AsyncExitStack
) -> None:
    server = await make_server(strict_join_ref=False)
    client = await open_client(server, stack)
    await client.send("1", "1", "call:r1", "phx_join", {"user_id": "u1"})
    await client.reply("1")
    await client.send(None, "2", "call:r1", "join_call", {})
    assert (await client.reply("2"))[4]["status"] == "ok"


@pytest.mark.parametrize(
    ("event", "payload"),
    [
        ("raise_hand", {}),
        ("toggle_audio", {}),
        ("media_event", {"payload": "{}"}),
        ("video_snapshot", {"data": "AAAA", "width": 320, "height": 240}),
        ("speaking_state", {"speaking": "yes"}),
        ("request_quality_tier", {"tier": "active"}),
    ],
    ids=[
        "unknown-event",
        "toggle-no-enabled",
        "media-event-no-data",
        "snapshot-no-timestamp",
        "speaking-not-boolean",
        "tier-request-no-target",
    ],
)
async def test_bad_event_crashes_the_channel_and_leaves_the_call(
    server: ReferenceServer, stack: AsyncExitStack, event: str, payload: Any
) -> None:
    alice = await member(server, stack, "alice")
    bob = await member(server, stack, "bob")
    await settle(alice, bob)
    bob.client.drain()

    ref = await alice.push(event, payload)
    error = await alice.client.take(lambda f: f[3] == "phx_error")
    assert error == [alice.join_ref, alice.join_ref, "call:r1", "phx_error", {}]
    assert not any(f[1] == ref for f in alice.client.frames)

    left = await bob.client.take(lambda f: f[3] == "participant_left")
    assert left[4] == {"user_id": "alice"}
    await settle(bob)
    assert [f[4] for f in bob.pushes("participant_left")] == [{"user_id": "alice"}]
    assert [f[4] for f in bob.pushes("quality_changed")] == [{"quality": "high"}] * 2
    assert list(call_of(server).participants) == ["bob"]

    # the channel is gone: the topic is unmatched until a new join
    ref = await alice.push("get_participants", {})
    assert (await alice.client.reply(ref))[4]["response"] == {
        "reason": "unmatched topic"
    }


async def test_bad_event_ignored_when_crashes_are_switched_off(
    make_server: ServerMaker, stack: AsyncExitStack
) -> None:
    server = await make_server(crash_on_bad_event=False)
    alice = await member(server, stack, "alice")
    ref = await alice.push("raise_hand", {})
    await settle(alice)
    assert not any(f[1] == ref or f[3] == "phx_error" for f in alice.client.frames)
    assert list(call_of(server).participants) == ["alice"]


async def test_test_control_crash_channel_sends_phx_error_and_leaves(
    server: ReferenceServer, stack: AsyncExitStack
) -> None:
    alice = await member(server, stack, "alice")
    bob = await member(server, stack, "bob")
    await server.crash_channel("r1", "alice")
    assert (await alice.client.take(lambda f: f[3] == "phx_error"))[0] == alice.join_ref
    left = await bob.client.take(lambda f: f[3] == "participant_left")
    assert left[4] == {"user_id": "alice"}


async def test_phoenix_client_sees_replies_and_refusals(
    server: ReferenceServer,
) -> None:
    socket = Socket(server.url, heartbeat_interval=30.0)
    await socket.connect()
    try:
        stranger = socket.channel("call:team", {"user_id": "stranger"})
        with pytest.raises(ReplyError) as refusal:
            await stranger.join(timeout=5)
        assert "not_room_member" in str(refusal.value)

        channel = socket.channel("call:r1", {"user_id": "py", "user_info": {}})
        assert await channel.join(timeout=5) == {"ice_servers": []}
        with pytest.raises(ReplyError) as error:
            await channel.push("toggle_audio", {"enabled": True}, timeout=5)
        assert "not_in_call" in str(error.value)
        joined = await channel.push("join_call", {}, timeout=5)
        assert list(joined["participants"]) == ["py"]
        assert await channel.push("leave_call", {}, timeout=5) == {}
    finally:
        await socket.close()


# -- leaving ---------------------------------------------------------------------


async def left_twice(watcher: Member, user_id: str) -> None:
    await watcher.client.take(lambda f: f[3] == "participant_left")
    await settle(watcher)
    assert [f[4] for f in watcher.pushes("participant_left")] == [{"user_id": user_id}]


async def test_phx_leave_replies_closes_and_leaves_the_call(
    server: ReferenceServer, stack: AsyncExitStack
) -> None:
    alice = await member(server, stack, "alice")
    bob = await member(server, stack, "bob")
    ref = await alice.push("phx_leave", {})
    assert await alice.client.reply(ref) == [
        alice.join_ref,
        ref,
        "call:r1",
        "phx_reply",
        OK,
    ]
    close = await alice.client.take(lambda f: f[3] == "phx_close")
    assert close == [alice.join_ref, alice.join_ref, "call:r1", "phx_close", {}]
    await left_twice(bob, "alice")
    assert [f[4] for f in bob.pushes("quality_changed")] == [{"quality": "high"}] * 2


async def test_socket_close_leaves_the_call(
    server: ReferenceServer, stack: AsyncExitStack
) -> None:
    alice = await member(server, stack, "alice")
    bob = await member(server, stack, "bob")
    await alice.client.close()
    await left_twice(bob, "alice")
    assert list(call_of(server).participants) == ["bob"]


async def test_duplicate_join_closes_the_old_channel_and_leaves_the_call(
    server: ReferenceServer, stack: AsyncExitStack
) -> None:
    alice = await member(server, stack, "alice")
    bob = await member(server, stack, "bob")
    old_join_ref = alice.join_ref

    join_ref, reply = await alice.client.join("call:r1", {"user_id": "alice"})

    assert reply[4]["status"] == "ok"
    close = await alice.client.take(lambda f: f[3] == "phx_close")
    assert close == [old_join_ref, old_join_ref, "call:r1", "phx_close", {}]
    await left_twice(bob, "alice")
    alice.join_ref = join_ref
    assert await alice.request("toggle_audio", {"enabled": True}) == NOT_IN_CALL


async def test_quality_tier_request_reaches_the_senders_other_channels(
    server: ReferenceServer, stack: AsyncExitStack
) -> None:
    alice = await member(server, stack, "alice")
    alice_tab = await member(server, stack, "alice", join_call=False)
    request = {"target_user_id": "alice", "tier": "viewer"}
    assert await alice.request("request_quality_tier", request) == OK
    push = await alice_tab.client.take(lambda f: f[3] == "quality_tier_request")
    assert push[4] == {"from_user_id": "alice", **request}
    error = await alice_tab.client.take(lambda f: f[3] == "phx_error")
    assert error[0] == alice_tab.join_ref
    # the tab never joined the call, so the sender stays in it
    await settle(alice)
    assert list(call_of(server).participants) == ["alice"]


# -- admin HTTP -----------------------------------------------------------------


async def test_admin_http_is_off_by_default(server: ReferenceServer) -> None:
    assert server.admin_url is None


async def test_admin_http_drives_the_test_control(
    make_server: ServerMaker, stack: AsyncExitStack
) -> None:
    server = await make_server(admin_port=0)
    assert server.admin_url is not None
    assert server.admin_url.startswith("http://127.0.0.1:")
    alice = await member(server, stack, "alice")
    bob = await member(server, stack, "bob")
    async with httpx.AsyncClient(base_url=server.admin_url, timeout=5) as http:
        rooms = (await http.get("/rooms")).json()
        assert rooms == {"rooms": ["lobby", "r1", "team"], "calls": ["r1"]}
        table = (await http.get("/rooms/r1/participants")).json()["participants"]
        assert sorted(table) == ["alice", "bob"]

        assert (await http.post("/clock/advance", json={"ms": 5000})).json() == {
            "monotonic_ms": 5000
        }
        missing = await http.post("/rooms/r1/channels/nobody/crash")
        assert missing.status_code == 404

        crash = await http.post("/rooms/r1/channels/alice/crash")
        assert crash.status_code == 200 and crash.json() == {"crashed": "alice"}
        error = await alice.client.take(lambda f: f[3] == "phx_error")
        assert error[0] == alice.join_ref
        await left_twice(bob, "alice")

        crash = await http.post("/rooms/r1/endpoints/bob/crash")
        assert crash.status_code == 200
        left = await bob.client.take(lambda f: f[3] == "participant_left")
        assert left[4] == {"user_id": "bob", "crashed": True}
        assert (await http.get("/candidates")).json() == {"received_candidates": []}
