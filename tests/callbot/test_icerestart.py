"""ICE restart as the answerer: two aiortc peers on loopback.

The offerer plays the browser's part of a restart (new credentials, new sockets
and candidates, aggressive nomination of the new pairs); the answerer is plain
aiortc plus :func:`prepare_ice_restart`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aioice.candidate import Candidate
from aioice.ice import CandidatePair, Connection, StunProtocol
from aioice.utils import random_string
from aiortc import (
    MediaStreamTrack,
    RTCPeerConnection,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.mediastreams import MediaStreamError

from callbot.rtc.icepolicy import (
    IceAddressPolicy,
    install_ice_policy,
    rtc_configuration,
)
from callbot.rtc.icerestart import prepare_ice_restart

pytestmark = pytest.mark.integration


@dataclass
class Counter:
    frames: int = 0
    task: asyncio.Task[None] | None = field(default=None, repr=False)


async def _count(track: MediaStreamTrack, counter: Counter) -> None:
    try:
        while True:
            await track.recv()
            counter.frames += 1
    except MediaStreamError:
        pass


@dataclass
class Call:
    offerer: RTCPeerConnection
    answerer: RTCPeerConnection
    at_answerer: Counter
    at_offerer: Counter


def _connection(pc: RTCPeerConnection) -> Connection:
    return pc.getTransceivers()[0].receiver.transport.transport._connection


def _dtls(pc: RTCPeerConnection) -> object:
    return pc.getTransceivers()[0].receiver.transport


async def _wait_for(predicate: object, timeout: float = 10.0) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


@pytest.fixture
async def call() -> AsyncIterator[Call]:
    install_ice_policy(IceAddressPolicy(["127.0.0.1"]))
    offerer = RTCPeerConnection(rtc_configuration([]))
    answerer = RTCPeerConnection(rtc_configuration([]))
    at_answerer, at_offerer = Counter(), Counter()

    @answerer.on("track")
    def on_answerer_track(track: MediaStreamTrack) -> None:
        at_answerer.task = asyncio.ensure_future(_count(track, at_answerer))

    @offerer.on("track")
    def on_offerer_track(track: MediaStreamTrack) -> None:
        at_offerer.task = asyncio.ensure_future(_count(track, at_offerer))

    offerer.addTrack(VideoStreamTrack())
    await offerer.setLocalDescription(await offerer.createOffer())
    offer = offerer.localDescription
    assert prepare_ice_restart(answerer, offer) == []
    await answerer.setRemoteDescription(offer)
    answerer.addTrack(VideoStreamTrack())
    await answerer.setLocalDescription(await answerer.createAnswer())
    await offerer.setRemoteDescription(answerer.localDescription)
    await _wait_for(lambda: at_answerer.frames > 10 and at_offerer.frames > 10)
    try:
        yield Call(offerer, answerer, at_answerer, at_offerer)
    finally:
        await offerer.close()
        await answerer.close()
        for counter in (at_answerer, at_offerer):
            if counter.task is not None:
                await counter.task


def _ufrag(description: RTCSessionDescription) -> str:
    for line in description.sdp.splitlines():
        if line.startswith("a=ice-ufrag:"):
            return line.split(":", 1)[1]
    raise AssertionError("no ufrag")


async def _new_generation(connection: Connection) -> list[StunProtocol]:
    """What a browser does on restartIce(): new credentials, new sockets."""
    connection._local_username = random_string(4)
    connection._local_password = random_string(22)
    before = list(connection._protocols)
    candidates = await connection.get_component_candidates(1, ["127.0.0.1"])
    connection._local_candidates = list(candidates)
    return [p for p in connection._protocols if p not in before]


def _check_new_pairs(connection: Connection, protocols: list[StunProtocol]) -> None:
    """The controlling side checks and (aggressively) nominates the new pairs."""
    remote: list[Candidate] = connection.remote_candidates
    for protocol in protocols:
        for candidate in remote:
            if not protocol.local_candidate.can_pair_with(candidate):
                continue
            pair = CandidatePair(protocol, candidate)
            pair.state = CandidatePair.State.WAITING
            connection._check_list.append(pair)
            connection.check_start_task(pair)


async def _restart(call: Call, *, extension: bool = True) -> list[StunProtocol]:
    offerer_ice = _connection(call.offerer)
    old_protocols = list(offerer_ice._protocols)
    new_protocols = await _new_generation(offerer_ice)
    await call.offerer.setLocalDescription(await call.offerer.createOffer())
    offer = call.offerer.localDescription

    previous_answer_ufrag = _connection(call.answerer).local_username
    if extension:
        restarts = prepare_ice_restart(call.answerer, offer)
        assert [r.new_remote_ufrag for r in restarts] == [_ufrag(offer)]
    await call.answerer.setRemoteDescription(offer)
    await call.answerer.setLocalDescription(await call.answerer.createAnswer())
    answer = call.answerer.localDescription
    if extension:
        # JSEP: the answer to a restart carries new credentials.
        assert _ufrag(answer) != previous_answer_ufrag
    offerer_ice.remote_username = _ufrag(answer)
    for line in answer.sdp.splitlines():
        if line.startswith("a=ice-pwd:"):
            offerer_ice.remote_password = line.split(":", 1)[1]
    await call.offerer.setRemoteDescription(answer)
    _check_new_pairs(offerer_ice, new_protocols)
    return old_protocols


async def test_restart_twice_nominates_new_pairs_and_media_keeps_flowing(
    call: Call,
) -> None:
    dtls_before = _dtls(call.answerer)
    answerer_ice = _connection(call.answerer)
    offerer_ice = _connection(call.offerer)

    for _ in range(2):
        old_protocols = await _restart(call)
        new_ports = {p.local_candidate.port for p in offerer_ice._protocols} - {
            p.local_candidate.port for p in old_protocols
        }
        # The answerer's nominated pair moves to the offerer's new socket.
        await _wait_for(
            lambda ports=new_ports: (
                answerer_ice._nominated[1].remote_candidate.port in ports
            )
        )
        assert offerer_ice._nominated[1].protocol.local_candidate.port in new_ports

        # Drop the old generation's sockets, like the browser does: media now
        # has only the new pair.
        for protocol in old_protocols:
            offerer_ice._protocols.remove(protocol)
            await protocol.close()
        at_answerer, at_offerer = call.at_answerer.frames, call.at_offerer.frames
        await _wait_for(
            lambda a=at_answerer, o=at_offerer: (
                call.at_answerer.frames > a + 30 and call.at_offerer.frames > o + 30
            )
        )

    # DTLS was never touched: same transport, still connected, one handshake.
    assert _dtls(call.answerer) is dtls_before
    assert call.answerer.connectionState == "connected"
    assert call.offerer.connectionState == "connected"


async def test_unchanged_credentials_are_no_restart(call: Call) -> None:
    await call.offerer.setLocalDescription(await call.offerer.createOffer())
    ufrag = _connection(call.answerer).local_username
    assert prepare_ice_restart(call.answerer, call.offerer.localDescription) == []
    assert _connection(call.answerer).local_username == ufrag


async def test_stock_aiortc_rejects_the_new_generation(
    call: Call, monkeypatch: pytest.MonkeyPatch
) -> None:
    offerer_ice = _connection(call.offerer)
    answerer_ice = _connection(call.answerer)
    nominated = answerer_ice._nominated[1]
    errors: list[int] = []
    respond_error = answerer_ice.respond_error

    def record(*args: object) -> None:
        error_code = args[-1]
        assert isinstance(error_code, tuple)
        errors.append(error_code[0])
        respond_error(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(answerer_ice, "respond_error", record)

    await _restart(call, extension=False)

    # Stock aiortc keeps the first remote ufrag and answers the new
    # generation's checks with 401, so nothing is renominated.
    new_pairs = [p for p in offerer_ice._check_list if p.task is not None]
    assert new_pairs
    await _wait_for(lambda: 401 in errors)
    assert all(p.state != CandidatePair.State.SUCCEEDED for p in new_pairs)
    assert answerer_ice._nominated[1] is nominated
