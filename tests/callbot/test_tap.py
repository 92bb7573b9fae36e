"""Tests of the encoded-frame tap (callbot/rtc/tap.py) against aiortc 1.16.0."""

from __future__ import annotations

import asyncio
import itertools
import queue
from collections.abc import Awaitable, Callable
from typing import Any

import aiortc.rtcrtpreceiver
import pytest
from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from callbot.rtc.tap import (
    EncodedFrame,
    EncodedTrack,
    ReceiverTap,
    make_frame,
    vp8_keyframe_size,
)
from tests.callbot.media_peers import (
    PatternVideoTrack,
    ToneAudioTrack,
    handshake,
    loopback_peer,
    wait_for,
)

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)


def vp8_keyframe(width: int, height: int) -> bytes:
    # Frame tag with the key-frame bit (bit 0) clear, start code, sizes.
    return (
        b"\x50\x02\x00\x9d\x01\x2a"
        + bytes([width & 0xFF, width >> 8, height & 0xFF, height >> 8])
        + b"\x00" * 8
    )


VP8_INTERFRAME = b"\x31\x02\x00" + b"\x00" * 12


class ManualTime:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class _Transport:
    state = "new"


def bare_receiver(kind: str) -> tuple[RTCRtpReceiver, list[int]]:
    """A receiver that is never started; its PLI sending is recorded."""
    receiver = RTCRtpReceiver(kind, _Transport())  # type: ignore[arg-type]
    sent: list[int] = []

    async def send_pli(media_ssrc: int) -> None:
        sent.append(media_ssrc)

    receiver._send_rtcp_pli = send_pli  # type: ignore[method-assign]
    return receiver, sent


class _Packet:
    def __init__(self, seq: int, timestamp: int, payload_type: int = 96) -> None:
        self.sequence_number = seq
        self.timestamp = timestamp
        self.payload_type = payload_type
        self.ssrc = 1234
        self._data = b""


def test_vp8_keyframe_size() -> None:
    assert vp8_keyframe_size(vp8_keyframe(640, 480)) == (640, 480)
    assert vp8_keyframe_size(VP8_INTERFRAME) is None
    assert vp8_keyframe_size(b"\x50\x02") is None


def test_make_frame_kinds() -> None:
    key = make_frame("video", "VP8", vp8_keyframe(320, 240), 7)
    assert (key.keyframe, key.width, key.height, key.timestamp) == (True, 320, 240, 7)
    delta = make_frame("video", "VP8", VP8_INTERFRAME, 8)
    assert (delta.keyframe, delta.width) == (False, None)
    assert make_frame("audio", "opus", b"\x78", 9).keyframe is True


async def test_tap_reports_frames_with_original_timestamp() -> None:
    receiver, _ = bare_receiver("video")
    receiver._RTCRtpReceiver__codecs[96] = VP8  # type: ignore[attr-defined]
    frames: list[EncodedFrame] = []
    tap = ReceiverTap(receiver, frames.append)
    jitter = receiver._RTCRtpReceiver__jitter_buffer  # type: ignore[attr-defined]

    for seq, ts, data in ((1, 4294964000, vp8_keyframe(640, 480)), (2, 1000, b"x")):
        packet = _Packet(seq, ts)
        packet._data = data
        jitter.add(packet)
    # The first frame is released when the next frame's first packet arrives.
    assert [f.timestamp for f in frames] == [4294964000]
    assert frames[0].keyframe and (frames[0].width, frames[0].height) == (640, 480)
    assert (tap.frames, tap.keyframes, tap.width) == (1, 1, 640)


async def test_gate_drops_until_enabled_then_starts_at_keyframe() -> None:
    receiver, sent = bare_receiver("video")
    inner: queue.Queue[Any] = receiver._RTCRtpReceiver__decoder_queue  # type: ignore[attr-defined]
    tap = ReceiverTap(receiver, lambda frame: None)
    gate = receiver._RTCRtpReceiver__decoder_queue  # type: ignore[attr-defined]

    class _Frame:
        def __init__(self, data: bytes) -> None:
            self.data = data

    gate.put((VP8, _Frame(vp8_keyframe(640, 480))))
    assert inner.qsize() == 0

    tap._on_packet(_Packet(1, 0))
    tap.set_decoding(True)
    await asyncio.sleep(0)
    assert sent == [1234]
    gate.put((VP8, _Frame(VP8_INTERFRAME)))
    assert inner.qsize() == 0
    gate.put((VP8, _Frame(vp8_keyframe(640, 480))))
    gate.put((VP8, _Frame(VP8_INTERFRAME)))
    assert inner.qsize() == 2
    assert tap.frames_to_decoder == 2

    tap.set_decoding(False)
    gate.put((VP8, _Frame(VP8_INTERFRAME)))
    gate.put(None)
    assert inner.qsize() == 3
    assert [inner.get() for _ in range(3)][2] is None


async def test_keyframe_requests_are_rate_limited_and_merged() -> None:
    receiver, sent = bare_receiver("video")
    clock = ManualTime()
    tap = ReceiverTap(receiver, lambda frame: None, keyframe_interval=0.05, clock=clock)

    tap.request_keyframe()  # nothing received yet: sent on the first packet
    await asyncio.sleep(0)
    assert sent == []
    tap._on_packet(_Packet(1, 0))
    await asyncio.sleep(0)
    assert sent == [1234]

    clock.now += 0.01
    tap.request_keyframe()
    tap.request_keyframe()
    await asyncio.sleep(0)
    assert sent == [1234]
    clock.now += 0.05
    await asyncio.sleep(0.08)
    assert sent == [1234, 1234]
    assert tap.keyframe_requests_sent == 2
    tap.close()


async def test_audio_tap_never_requests_keyframes() -> None:
    receiver, sent = bare_receiver("audio")
    tap = ReceiverTap(receiver, lambda frame: None)
    tap._on_packet(_Packet(1, 0, 111))
    tap.request_keyframe()
    tap.set_decoding(True)
    await asyncio.sleep(0)
    assert sent == []


async def test_encoded_track_sets_pts_and_unwraps_timestamps() -> None:
    track = EncodedTrack("video")
    for ts in (4294963000, 4294966000, 1704, 4704):
        track.push(EncodedFrame("video", b"v", ts, keyframe=True))
    packets = [await track.recv() for _ in range(4)]
    assert [p.pts for p in packets] == [0, 3000, 6000, 9000]
    assert all(p.time_base == pytest.approx(1 / 90000) for p in packets)

    audio = EncodedTrack("audio")
    audio.push(EncodedFrame("audio", b"a", 10, keyframe=True))
    packet = await audio.recv()
    assert packet.time_base == pytest.approx(1 / 48000)
    assert bytes(packet) == b"a"


async def test_encoded_track_overflow_waits_for_keyframe() -> None:
    track = EncodedTrack("video", max_queue=2)
    requests: list[int] = []
    track.on_keyframe_request = lambda: requests.append(1)
    for ts in (0, 3000, 6000):
        track.push(EncodedFrame("video", b"d", ts, keyframe=False))
    assert requests == [1]
    track.push(EncodedFrame("video", b"d", 9000, keyframe=False))
    track.push(EncodedFrame("video", b"k", 12000, keyframe=True))
    packet = await track.recv()
    assert bytes(packet) == b"k"
    assert track.frames_dropped == 4


async def test_encoded_track_stop_ends_recv() -> None:
    track = EncodedTrack("audio")
    waiter = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0)
    track.stop()
    with pytest.raises(MediaStreamError):
        await waiter


def count_decoders(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    created: list[str] = []
    original = aiortc.rtcrtpreceiver.get_decoder

    def get_decoder(codec: Any) -> Any:
        created.append(codec.name)
        return original(codec)

    monkeypatch.setattr(aiortc.rtcrtpreceiver, "get_decoder", get_decoder)
    return created


def count_keyframe_requests(sender: RTCRtpSender) -> list[int]:
    requests: list[int] = []
    original = sender._send_keyframe

    def send_keyframe() -> None:
        requests.append(1)
        original()

    sender._send_keyframe = send_keyframe  # type: ignore[method-assign]
    return requests


def record_rtp_timestamps(receiver: RTCRtpReceiver) -> set[int]:
    seen: set[int] = set()
    original: Callable[..., Awaitable[None]] = receiver._handle_rtp_packet

    async def handle(packet: Any, arrival_time_ms: int) -> None:
        seen.add(packet.timestamp)
        await original(packet, arrival_time_ms)

    receiver._handle_rtp_packet = handle  # type: ignore[method-assign]
    return seen


@pytest.mark.integration
async def test_tap_on_loopback_gated_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    decoders = count_decoders(monkeypatch)
    publisher = loopback_peer()
    subscriber = loopback_peer()
    taps: dict[str, ReceiverTap] = {}
    frames: dict[str, list[EncodedFrame]] = {"audio": [], "video": []}
    rtp: dict[str, set[int]] = {}

    @subscriber.on("track")
    def on_track(track: Any) -> None:
        receiver = next(
            t.receiver
            for t in subscriber.getTransceivers()
            if t.receiver.track is track
        )
        taps[track.kind] = ReceiverTap(receiver, frames[track.kind].append)
        rtp[track.kind] = record_rtp_timestamps(receiver)

    try:
        video_sender = publisher.addTrack(PatternVideoTrack())
        publisher.addTrack(ToneAudioTrack())
        pli = count_keyframe_requests(video_sender)
        await handshake(publisher, subscriber)
        await wait_for(lambda: len(frames["video"]) >= 30, 10.0)

        video = frames["video"]
        assert video[0].keyframe
        assert (video[0].width, video[0].height) == (640, 480)
        assert {f.timestamp for f in video} <= rtp["video"]
        steps = {
            (b.timestamp - a.timestamp) % 2**32 for a, b in itertools.pairwise(video)
        }
        # aiortc's encoder rounds each frame's time base conversion.
        assert steps <= {2999, 3000, 3001}
        audio = frames["audio"]
        assert len(audio) > 20
        assert {f.timestamp for f in audio} <= rtp["audio"]
        assert {
            (b.timestamp - a.timestamp) % 2**32 for a, b in itertools.pairwise(audio)
        } == {960}

        # Gated: nobody decoded anything.
        assert decoders == []
        assert taps["video"].frames_to_decoder == taps["audio"].frames_to_decoder == 0

        # Decoding on: a PLI goes upstream, decoding restarts at a keyframe.
        before = len(pli)
        taps["video"].set_decoding(True)
        video_track = taps["video"].receiver.track
        frame = await asyncio.wait_for(video_track.recv(), 3.0)
        assert (frame.width, frame.height) == (640, 480)
        assert decoders == ["VP8"]
        assert taps["video"].keyframe_requests_sent >= 1
        await wait_for(lambda: len(pli) > before, 3.0)
    finally:
        await publisher.close()
        await subscriber.close()

    # Closing passes None through the gate: the audio track ends, never decoded.
    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(taps["audio"].receiver.track.recv(), 2.0)
    assert "opus" not in decoders


@pytest.mark.integration
async def test_encoded_track_relays_without_encoding_and_forwards_pli(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # publisher -> (relay_in) tap -> EncodedTrack (relay_out) -> viewer
    publisher = loopback_peer()
    relay_in = loopback_peer()
    relay_out = loopback_peer()
    viewer = loopback_peer()
    relayed = EncodedTrack("video")
    taps: list[ReceiverTap] = []
    started = False

    def on_frame(frame: EncodedFrame) -> None:
        nonlocal started
        started = started or frame.keyframe
        if started:
            relayed.push(frame)

    @relay_in.on("track")
    def on_track(track: Any) -> None:
        receiver = relay_in.getTransceivers()[0].receiver
        taps.append(ReceiverTap(receiver, on_frame))

    try:
        sender = publisher.addTrack(PatternVideoTrack())
        pli = count_keyframe_requests(sender)
        await handshake(publisher, relay_in)
        relay_out.addTrack(relayed)
        relayed.on_keyframe_request = taps[0].request_keyframe
        await handshake(relay_out, viewer)

        viewer_receiver = viewer.getTransceivers()[0].receiver
        viewer_tap = ReceiverTap(viewer_receiver, lambda frame: None, decoding=True)
        track = viewer_receiver.track
        sizes = []
        for _ in range(20):
            frame = await asyncio.wait_for(track.recv(), 5.0)
            sizes.append((frame.width, frame.height))
        assert set(sizes) == {(640, 480)}
        assert relayed.frames_sent >= 20

        # The viewer's PLI crosses the relay and reaches the publisher's sender.
        before = len(pli)
        viewer_tap.request_keyframe()
        await wait_for(lambda: relayed.keyframe_requests >= 1, 3.0)
        await wait_for(lambda: len(pli) > before, 3.0)
    finally:
        for pc in (publisher, relay_in, relay_out, viewer):
            await pc.close()


def test_tap_refuses_a_second_tap() -> None:
    receiver, _ = bare_receiver("video")
    ReceiverTap(receiver, lambda frame: None)
    with pytest.raises(ValueError):
        ReceiverTap(receiver, lambda frame: None)
