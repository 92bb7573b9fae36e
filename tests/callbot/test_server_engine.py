"""Bad media-event input through the reference server's engine (media events §1, §10).

Each case is sent by one participant on the wire; the server must either
ignore it or crash only that participant's endpoint
(``participant_left {user_id, crashed: true}``), and the other participant's
endpoint must go on answering media events.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import pytest
from aiortc import RTCPeerConnection

from callbot.server.app import ReferenceServer
from callbot.server.clock import ManualClock
from callbot.server.settings import ServerSettings
from tests.callbot.media_peers import loopback_peer
from tests.callbot.raw_phoenix import Frame, RawClient

pytestmark = pytest.mark.integration

TOPIC = "call:lobby"
_FOUNDATION = re.compile(r"^a=candidate:(\S+)", re.MULTILINE)


@dataclass
class Participant:
    client: RawClient
    user_id: str
    join_ref: str
    endpoint_id: str = ""
    offered: bool = False

    async def request(self, event: str, payload: Any) -> dict[str, Any]:
        return await self.client.request(self.join_ref, TOPIC, event, payload)

    async def join_call(self) -> None:
        reply = await self.request("join_call", {})
        assert reply["status"] == "ok"
        self.endpoint_id = reply["response"]["endpoint_id"]
        self.offered = False

    async def send_raw(self, data: Any) -> None:
        await self.client.push(self.join_ref, TOPIC, "media_event", {"data": data})

    async def send(self, document: dict[str, Any]) -> None:
        await self.send_raw(json.dumps(document))

    async def send_custom(self, kind: str, data: Any = None) -> None:
        inner: dict[str, Any] = {"type": kind}
        if data is not None:
            inner["data"] = data
        await self.send({"type": "custom", "data": inner})

    async def media(
        self, kind: str, timeout: float = 5.0, **fields: Any
    ) -> dict[str, Any]:
        """The next media event of this type (custom ones by their inner type)
        whose data has these field values."""

        def match(frame: Frame) -> bool:
            if frame[3] != "media_event" or _media_type(frame) != kind:
                return False
            data = _media_data(frame)
            return all(data.get(k) == v for k, v in fields.items())

        frame = await self.client.take(match, timeout=timeout)
        return _media_data(frame)

    async def connect(self) -> dict[str, Any]:
        await self.send(
            {"type": "connect", "data": {"metadata": {"name": self.user_id}}}
        )
        return await self.media("connected")

    async def barrier(self) -> None:
        await self.client.barrier(self.join_ref, TOPIC)


def _media_document(frame: Frame) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(frame[4]["data"])
    return document


def _media_type(frame: Frame) -> str:
    document = _media_document(frame)
    if document["type"] == "custom":
        return str(document["data"]["type"])
    return str(document["type"])


def _media_data(frame: Frame) -> dict[str, Any]:
    document = _media_document(frame)
    if document["type"] == "custom":
        document = document["data"]
    data: dict[str, Any] = document.get("data") or {}
    return data


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as stack:
        yield stack


ServerMaker = Callable[..., Awaitable[ReferenceServer]]


@pytest.fixture
def make_server(stack: AsyncExitStack) -> ServerMaker:
    async def make(**settings: Any) -> ReferenceServer:
        server = ReferenceServer(ServerSettings(port=0, **settings), ManualClock())
        await server.start()
        stack.push_async_callback(server.stop)
        stack.callback(only_loopback_candidates, server)
        return server

    return make


def only_loopback_candidates(server: ReferenceServer) -> None:
    """Every ICE candidate the server received is on 127.0.0.1."""
    for candidate in server.received_candidates:
        assert candidate.split()[4] == "127.0.0.1", candidate


async def participant(
    server: ReferenceServer, stack: AsyncExitStack, user_id: str
) -> Participant:
    client = await RawClient.open(server.url)
    stack.push_async_callback(client.close)
    join_ref, reply = await client.join(TOPIC, {"user_id": user_id})
    assert reply[4]["status"] == "ok"
    joined = Participant(client, user_id, join_ref)
    await joined.join_call()
    return joined


async def pair(
    server: ReferenceServer, stack: AsyncExitStack
) -> tuple[Participant, Participant]:
    """alice and bob in the call, both endpoints connected."""
    alice = await participant(server, stack, "alice")
    bob = await participant(server, stack, "bob")
    assert (await alice.connect())["otherEndpoints"] == []
    connected = await bob.connect()
    assert [e["id"] for e in connected["otherEndpoints"]] == [alice.endpoint_id]
    added = await alice.media("endpointAdded")
    assert added == {
        "id": bob.endpoint_id,
        "type": "exwebrtc",
        "metadata": {"name": "bob"},
    }
    return alice, bob


async def client_offer(
    stack: AsyncExitStack,
    endpoint_id: str,
    kinds: tuple[str, ...] = ("audio",),
    receive: dict[str, int] | None = None,
) -> tuple[str, dict[str, str]]:
    """An aiortc offer (candidates inside, 32-hex foundations) and its mid map.

    ``receive``: ``offerData.tracksTypes``, one recvonly m-line per track.
    """
    pc: RTCPeerConnection = loopback_peer()
    stack.push_async_callback(pc.close)
    for kind in kinds:
        pc.addTransceiver(kind, direction="sendonly")
    for kind in ("audio", "video"):
        for _ in range((receive or {}).get(kind, 0)):
            pc.addTransceiver(kind, direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    assert pc.localDescription is not None
    mids = {
        str(t.mid): f"{endpoint_id}:{t.kind}-{t.mid}"
        for t in pc.getTransceivers()
        if t.direction == "sendonly"
    }
    return pc.localDescription.sdp, mids


def integer_foundations(sdp: str) -> str:
    """The offer with decimal foundations, as the bot sends it."""
    return _FOUNDATION.sub(
        lambda m: f"a=candidate:{zlib.crc32(m.group(1).encode())}", sdp
    )


def offer_event(sdp: str, mids: dict[str, str]) -> dict[str, Any]:
    return {
        "sdpOffer": {"type": "offer", "sdp": sdp},
        "trackIdToTrackMetadata": {t: {} for t in mids.values()},
        "trackIdToTrackBitrates": {t: 50000 for t in mids.values()},
        "midToTrackId": mids,
    }


async def still_answers(member: Participant, stack: AsyncExitStack) -> None:
    """The endpoint answers a metadata update and, the first time, an offer."""
    metadata = {"name": member.user_id, "probe": member.client.next_ref()}
    await member.send(
        {"type": "updateEndpointMetadata", "data": {"metadata": metadata}}
    )
    assert await member.media("endpointUpdated", id=member.endpoint_id) == {
        "id": member.endpoint_id,
        "metadata": metadata,
    }
    if member.offered:
        return
    # a round may already be running (others published): then this is queued
    await member.send_custom("renegotiateTracks")
    offer_data = await member.media("offerData")
    receive = offer_data["tracksTypes"]
    sdp, mids = await client_offer(stack, member.endpoint_id, receive=receive)
    await member.send_custom("sdpOffer", offer_event(integer_foundations(sdp), mids))
    member.offered = True
    answer = await member.media("sdpAnswer", timeout=10.0)
    assert answer["type"] == "answer"
    own = {mid: t for mid, t in answer["midToTrackId"].items() if mid in mids}
    assert own == mids
    # remote tracks on the recvonly m-lines (removed ones are not placed)
    remote = {m: t for m, t in answer["midToTrackId"].items() if m not in mids}
    assert len(remote) <= sum(receive.values())
    assert not any(t.startswith(f"{member.endpoint_id}:") for t in remote.values())


async def crashed(server: ReferenceServer, *members: Participant, user_id: str) -> None:
    """Every member hears ``participant_left {crashed}`` twice, and no more."""
    for member in members:
        left = await member.client.take(lambda f: f[3] == "participant_left")
        assert left[4] == {"user_id": user_id, "crashed": True}
        await member.barrier()
        assert [f[4] for f in member.client.drain("participant_left")] == [left[4]]
    call = server.call("lobby")
    assert call is not None and user_id not in call.participants


async def not_crashed(server: ReferenceServer, *members: Participant) -> None:
    for member in members:
        await member.barrier()
        assert member.client.drain("participant_left") == []
    call = server.call("lobby")
    assert call is not None
    assert sorted(call.participants) == sorted(m.user_id for m in members)


# -- ignored ---------------------------------------------------------------------

IGNORED: list[tuple[str, str]] = [
    ("json-does-not-parse", '{"type": "connect", "data": {"metadata"'),
    ("unknown-type", json.dumps({"type": "joinRoom", "data": {"room": "x"}})),
    (
        "unknown-custom-type",
        json.dumps({"type": "custom", "data": {"type": "sdpAnswer", "data": {}}}),
    ),
    (
        "sdpOffer-without-its-sdp-document",
        json.dumps(
            {
                "type": "custom",
                "data": {
                    "type": "sdpOffer",
                    "data": {"trackIdToTrackMetadata": {}, "midToTrackId": {}},
                },
            }
        ),
    ),
    ("connect-without-metadata", json.dumps({"type": "connect", "data": {}})),
]


@pytest.mark.parametrize("data", [d for _, d in IGNORED], ids=[i for i, _ in IGNORED])
async def test_invalid_media_events_are_ignored(
    make_server: ServerMaker, stack: AsyncExitStack, data: str
) -> None:
    server = await make_server()
    alice, bob = await pair(server, stack)

    await alice.send_raw(data)

    await still_answers(alice, stack)
    await still_answers(bob, stack)
    await not_crashed(server, alice, bob)


# -- crashes the sender's endpoint --------------------------------------------------


async def send_object_data(alice: Participant, stack: AsyncExitStack) -> None:
    await alice.send_raw({"type": "connect", "data": {"metadata": {}}})


async def send_candidate_without_sdp_mid(
    alice: Participant, stack: AsyncExitStack
) -> None:
    sdp, mids = await client_offer(stack, alice.endpoint_id)
    await alice.send_custom("sdpOffer", offer_event(integer_foundations(sdp), mids))
    alice.offered = True
    await alice.media("sdpAnswer", timeout=10.0)
    await alice.send_custom(
        "candidate",
        {
            "candidate": "candidate:1 1 UDP 2122252543 127.0.0.1 50000 typ host",
            "sdpMLineIndex": 0,
        },
    )


async def send_candidate_before_offer(
    alice: Participant, stack: AsyncExitStack
) -> None:
    await alice.send_custom(
        "candidate",
        {
            "candidate": "candidate:1 1 UDP 2122252543 127.0.0.1 50000 typ host",
            "sdpMLineIndex": 0,
            "sdpMid": "0",
        },
    )


async def send_hex_foundation_offer(alice: Participant, stack: AsyncExitStack) -> None:
    sdp, mids = await client_offer(stack, alice.endpoint_id)
    assert any(not f.isdigit() for f in _FOUNDATION.findall(sdp))
    await alice.send_custom("sdpOffer", offer_event(sdp, mids))
    alice.offered = True


async def send_offer_without_bundle(alice: Participant, stack: AsyncExitStack) -> None:
    sdp, mids = await client_offer(stack, alice.endpoint_id, ("audio", "video"))
    sdp = integer_foundations(sdp)
    assert "a=group:BUNDLE" in sdp
    unbundled = "".join(
        line
        for line in sdp.splitlines(keepends=True)
        if not line.startswith("a=group:BUNDLE")
    )
    await alice.send_custom("sdpOffer", offer_event(unbundled, mids))
    alice.offered = True


async def send_sdp_offer_without_sdp(alice: Participant, stack: AsyncExitStack) -> None:
    event = offer_event("", {})
    event["sdpOffer"] = {"type": "offer"}
    await alice.send_custom("sdpOffer", event)
    alice.offered = True


async def send_unmapped_sending_mid(alice: Participant, stack: AsyncExitStack) -> None:
    sdp, _mids = await client_offer(stack, alice.endpoint_id)
    await alice.send_custom("sdpOffer", offer_event(integer_foundations(sdp), {}))
    alice.offered = True


CRASHES: list[tuple[str, Callable[[Participant, AsyncExitStack], Awaitable[None]]]] = [
    ("data-not-a-string", send_object_data),
    ("candidate-without-sdpMid", send_candidate_without_sdp_mid),
    ("candidate-before-first-offer", send_candidate_before_offer),
    ("offer-with-hex-foundation", send_hex_foundation_offer),
    ("offer-without-bundle", send_offer_without_bundle),
    ("sdpOffer-object-without-sdp", send_sdp_offer_without_sdp),
    ("sending-mid-not-in-midToTrackId", send_unmapped_sending_mid),
]


@pytest.mark.parametrize(
    "mistake", [m for _, m in CRASHES], ids=[i for i, _ in CRASHES]
)
async def test_mistakes_crash_only_the_senders_endpoint(
    make_server: ServerMaker,
    stack: AsyncExitStack,
    mistake: Callable[[Participant, AsyncExitStack], Awaitable[None]],
) -> None:
    server = await make_server()
    alice, bob = await pair(server, stack)
    old_endpoint = alice.endpoint_id

    await mistake(alice, stack)

    await crashed(server, alice, bob, user_id="alice")
    assert await bob.media("endpointRemoved") == {"id": old_endpoint}
    await still_answers(bob, stack)

    # a crash is not a track removal
    assert bob.client.drain("track_removed") == []

    # alice's channel stays in the call: her media events get no reply and
    # go nowhere until she joins the call again
    alice.client.drain("media_event")  # what her endpoint sent before
    ref = await alice.client.push(
        alice.join_ref,
        TOPIC,
        "media_event",
        {"data": json.dumps({"type": "custom", "data": {"type": "renegotiateTracks"}})},
    )
    await alice.barrier()
    assert alice.client.drain("media_event") == []
    assert not any(f[1] == ref for f in alice.client.frames)
    await alice.join_call()
    assert alice.endpoint_id != old_endpoint
    others = (await alice.connect())["otherEndpoints"]
    assert [e["id"] for e in others] == [bob.endpoint_id]


async def test_hex_foundations_are_accepted_when_the_switch_is_off(
    make_server: ServerMaker, stack: AsyncExitStack
) -> None:
    server = await make_server(integer_foundations_only=False)
    alice, bob = await pair(server, stack)
    sdp, mids = await client_offer(stack, alice.endpoint_id)

    await alice.send_custom("sdpOffer", offer_event(sdp, mids))

    alice.offered = True

    answer = await alice.media("sdpAnswer", timeout=10.0)
    assert answer["midToTrackId"] == mids
    await not_crashed(server, alice, bob)
    assert server.received_candidates == [
        line[2:] for line in sdp.splitlines() if line.startswith("a=candidate:")
    ]


async def test_candidates_after_the_offer_and_end_of_candidates_are_fine(
    make_server: ServerMaker, stack: AsyncExitStack
) -> None:
    server = await make_server()
    alice, bob = await pair(server, stack)
    sdp, mids = await client_offer(stack, alice.endpoint_id)
    await alice.send_custom("sdpOffer", offer_event(integer_foundations(sdp), mids))
    alice.offered = True
    answer = await alice.media("sdpAnswer", timeout=10.0)
    assert "a=ice-options:trickle" in answer["sdp"]
    assert "a=candidate" not in answer["sdp"]

    null_mid = "candidate:1 1 UDP 2122252543 127.0.0.1 50000 typ host"
    await alice.send_custom(
        "candidate",
        {
            "candidate": null_mid,
            "sdpMLineIndex": 0,
            "sdpMid": None,
            "usernameFragment": None,
        },
    )
    await alice.send_custom(
        "candidate", {"candidate": "", "sdpMLineIndex": 0, "sdpMid": "0"}
    )

    await still_answers(alice, stack)
    await not_crashed(server, alice, bob)
    assert null_mid in server.received_candidates
    for candidate in server.received_candidates:
        assert candidate.split()[4] == "127.0.0.1"
    # the server trickles its own candidates, decimal foundations, bundle mid
    server_candidate = await alice.media("candidate")
    assert server_candidate["sdpMid"] == "0" and server_candidate["sdpMLineIndex"] == 0
    assert server_candidate["usernameFragment"] is None
    assert re.match(r"candidate:\d+ ", server_candidate["candidate"])


async def test_test_control_crash_endpoint(
    make_server: ServerMaker, stack: AsyncExitStack
) -> None:
    server = await make_server()
    alice, bob = await pair(server, stack)
    await server.crash_endpoint("lobby", "alice")
    await crashed(server, alice, bob, user_id="alice")
    await still_answers(bob, stack)


async def test_disconnect_removes_the_participant_without_crash(
    make_server: ServerMaker, stack: AsyncExitStack
) -> None:
    server = await make_server()
    alice, bob = await pair(server, stack)
    await alice.send({"type": "disconnect"})
    for member in (alice, bob):
        left = await member.client.take(lambda f: f[3] == "participant_left")
        assert left[4] == {"user_id": "alice"}
    assert await bob.media("endpointRemoved") == {"id": alice.endpoint_id}
    await still_answers(bob, stack)
    # the engine path: no quality_changed, alice's channel still "in the call"
    await bob.barrier()
    assert bob.client.drain("quality_changed") == []
    # the CallServer no longer knows her: leave_call is still ok
    assert await alice.request("leave_call", {}) == {"status": "ok", "response": {}}


async def test_too_few_receive_transceivers_crash_the_receiver_only(
    make_server: ServerMaker, stack: AsyncExitStack
) -> None:
    server = await make_server()
    alice, bob = await pair(server, stack)
    sdp, mids = await client_offer(stack, alice.endpoint_id, ("audio", "video"))
    await alice.send_custom("sdpOffer", offer_event(integer_foundations(sdp), mids))
    alice.offered = True
    await alice.media("sdpAnswer", timeout=10.0)

    added = await bob.media("tracksAdded")
    assert added["endpointId"] == alice.endpoint_id
    assert sorted(added["tracks"]) == sorted(mids.values())
    assert (await bob.media("offerData"))["tracksTypes"] == {"audio": 1, "video": 1}
    # bob offers one audio receiver where one audio and one video are needed
    short, own = await client_offer(stack, bob.endpoint_id, receive={"audio": 1})
    await bob.send_custom("sdpOffer", offer_event(integer_foundations(short), own))

    await crashed(server, alice, bob, user_id="bob")
    await still_answers(alice, stack)


async def test_answer_keeps_opus_and_vp8_and_track_added_follows(
    make_server: ServerMaker, stack: AsyncExitStack
) -> None:
    server = await make_server()
    alice, bob = await pair(server, stack)
    sdp, mids = await client_offer(stack, alice.endpoint_id, ("audio", "video"))
    assert "H264/90000" in sdp and "PCMU/8000" in sdp

    await alice.send_custom("sdpOffer", offer_event(integer_foundations(sdp), mids))
    alice.offered = True
    answer = await alice.media("sdpAnswer", timeout=10.0)

    lines = answer["sdp"].split("\r\n")
    codecs = sorted(
        {line.split(" ", 1)[1].split("/")[0] for line in lines if "a=rtpmap:" in line}
    )
    assert codecs == ["VP8", "opus", "rtx"]
    assert not any("goog-remb" in line for line in lines)
    assert [line.split()[1] for line in lines if line.startswith("a=extmap:")] == [
        "urn:ietf:params:rtp-hdrext:sdes:mid",
        "urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        "urn:ietf:params:rtp-hdrext:sdes:mid",
    ]
    assert "a=extmap-allow-mixed" in lines
    assert lines.count("a=setup:active") == 2
    assert lines.count("a=recvonly") == 2
    assert answer["midToTrackId"] == mids

    # the answer first, then track_added for each track, twice, to everyone
    await settle_all(alice, bob)
    expected = [(mids["0"], "audio", "opus"), (mids["1"], "video", "VP8")]
    for member in (alice, bob):
        added = member.client.drain("track_added")
        assert len(added) == 4
        assert (
            sorted({(f[4]["track_id"], f[4]["type"], f[4]["encoding"]) for f in added})
            == expected
        )
        assert all(f[4]["endpoint_id"] == alice.endpoint_id for f in added)

    # bob learns both tracks in one tracksAdded and one offerData
    added_event = await bob.media("tracksAdded")
    assert sorted(added_event["tracks"]) == sorted(mids.values())
    assert added_event["tracks"][mids["1"]] == {
        "metadata": {},
        "simulcastConfig": {
            "enabled": False,
            "activeEncodings": ["h"],
            "disabledEncodings": [],
        },
    }
    assert (await bob.media("offerData")) == {
        "tracksTypes": {"audio": 1, "video": 1},
        "integratedTurnServers": [],
    }


async def settle_all(*members: Participant) -> None:
    for member in members:
        await member.barrier()
