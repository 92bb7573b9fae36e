"""Encoded frames around aiortc: taken from a receiver, sent through a sender.

:class:`ReceiverTap` takes each frame out of an ``RTCRtpReceiver``'s jitter
buffer with its original RTP timestamp, before aiortc rewrites it, and gates
the receiver's decoder so that no decoding happens while nobody consumes
decoded frames. :class:`EncodedTrack` hands already encoded frames to an
``RTCRtpSender``, which packetizes them without encoding, and reports the
subscriber's keyframe requests (PLI/FIR).

This module reaches into aiortc's private attributes and is pinned to one
aiortc version; importing it with another version fails.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import queue
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiortc
import av
from aiortc import MediaStreamTrack, RTCRtpReceiver, RTCRtpSender
from aiortc.mediastreams import MediaStreamError

logger = logging.getLogger(__name__)

AIORTC_VERSION = "1.16.0"

if aiortc.__version__ != AIORTC_VERSION:
    raise ImportError(
        f"callbot.rtc.tap is written against aiortc {AIORTC_VERSION}, "
        f"found {aiortc.__version__}: check the receiver and sender internals "
        "it patches before changing the pin"
    )

VIDEO_CLOCK_RATE = 90000
AUDIO_CLOCK_RATE = 48000
KEYFRAME_REQUEST_INTERVAL = 0.5
"""Seconds between two keyframe requests sent upstream by one tap."""

_VP8_START_CODE = b"\x9d\x01\x2a"


@dataclass
class EncodedFrame:
    """One encoded video frame or audio packet."""

    kind: str
    data: bytes
    timestamp: int
    """The original 32-bit RTP timestamp."""
    keyframe: bool
    """A VP8 keyframe; always true for audio, where every packet stands alone."""
    width: int | None = None
    height: int | None = None


def vp8_keyframe_size(data: bytes) -> tuple[int, int] | None:
    """Width and height if ``data`` is a VP8 keyframe, else ``None``."""
    if len(data) < 10 or data[0] & 0x01 or data[3:6] != _VP8_START_CODE:
        return None
    width = (data[6] | data[7] << 8) & 0x3FFF
    height = (data[8] | data[9] << 8) & 0x3FFF
    return width, height


def make_frame(kind: str, codec_name: str, data: bytes, timestamp: int) -> EncodedFrame:
    """Describe an encoded frame, parsing the VP8 keyframe header."""
    if kind == "audio":
        return EncodedFrame(kind, data, timestamp, keyframe=True)
    if codec_name.lower() == "vp8":
        size = vp8_keyframe_size(data)
        if size is not None:
            return EncodedFrame(kind, data, timestamp, True, size[0], size[1])
    return EncodedFrame(kind, data, timestamp, keyframe=False)


class _JitterBufferTap:
    """Stands in for the receiver's jitter buffer and reports every frame."""

    def __init__(self, inner: Any, tap: ReceiverTap) -> None:
        self._inner = inner
        self._tap = tap

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def add(self, packet: Any) -> tuple[bool, Any]:
        pli_flag, frame = self._inner.add(packet)
        self._tap._on_packet(packet)
        if frame is not None:
            # aiortc maps the timestamp only after this call returns.
            self._tap._on_jitter_frame(packet.payload_type, frame.data, frame.timestamp)
        return pli_flag, frame


class _DecoderGate:
    """Stands in for the receiver's decoder queue; lets frames through on demand.

    ``None`` (the receiver closing) always passes, so the decoder thread ends.
    """

    def __init__(self, inner: queue.Queue[Any], tap: ReceiverTap) -> None:
        self._inner = inner
        self._tap = tap

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is None or self._tap._admit_to_decoder(item):
            self._inner.put(item, block, timeout)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        return self._inner.get(block, timeout)

    def qsize(self) -> int:
        return self._inner.qsize()


class ReceiverTap:
    """Encoded frames of one ``RTCRtpReceiver``, and its gated decoder.

    Attach it before or after ``receive()`` runs (the ``track`` event is a good
    place); frames are reported from the next packet on. ``on_packet`` sees
    every RTP packet (an aiortc ``RtpPacket``, header extensions parsed) as it
    enters the jitter buffer.
    """

    def __init__(
        self,
        receiver: RTCRtpReceiver,
        on_frame: Callable[[EncodedFrame], None],
        *,
        on_packet: Callable[[Any], None] | None = None,
        decoding: bool = False,
        keyframe_interval: float = KEYFRAME_REQUEST_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.receiver = receiver
        self.kind: str = receiver._RTCRtpReceiver__kind  # type: ignore[attr-defined]
        self._on_frame = on_frame
        self._on_packet_seen = on_packet
        self._decoding = decoding
        self._awaiting_keyframe = False
        self._keyframe_interval = keyframe_interval
        self._clock = clock
        self._last_request: float | None = None
        self._request_pending = False
        self._deferred: asyncio.TimerHandle | None = None
        self._ssrc: int | None = None
        self._tasks: set[asyncio.Future[None]] = set()

        self.frames = 0
        self.bytes = 0
        self.keyframes = 0
        self.width: int | None = None
        self.height: int | None = None
        self.frames_to_decoder = 0
        self.keyframe_requests_sent = 0

        jitter = receiver._RTCRtpReceiver__jitter_buffer  # type: ignore[attr-defined]
        if isinstance(jitter, _JitterBufferTap):
            raise ValueError("receiver already has a tap")
        receiver._RTCRtpReceiver__jitter_buffer = _JitterBufferTap(jitter, self)  # type: ignore[attr-defined]
        decoder_queue = receiver._RTCRtpReceiver__decoder_queue  # type: ignore[attr-defined]
        receiver._RTCRtpReceiver__decoder_queue = _DecoderGate(decoder_queue, self)  # type: ignore[attr-defined]

    @property
    def decoding(self) -> bool:
        """Whether frames reach aiortc's decoder (and the receiver's track)."""
        return self._decoding

    @property
    def ssrc(self) -> int | None:
        """The media SSRC seen in the publisher's RTP, once a packet arrived."""
        return self._ssrc

    def set_decoding(self, enabled: bool) -> None:
        """Switch decoding on or off; off means no decode work at all.

        Switching video decoding on restarts it at the next keyframe, which is
        requested upstream at once.
        """
        if enabled == self._decoding:
            return
        self._decoding = enabled
        if enabled and self.kind == "video":
            self._awaiting_keyframe = True
            self.request_keyframe()
        logger.debug(
            "Decoding of %s receiver %s", self.kind, "on" if enabled else "off"
        )

    def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe (RTCP PLI), at most once per interval.

        A request inside the interval is sent when the interval ends, so no
        request is lost, only merged with others.
        """
        if self.kind != "video":
            return
        now = self._clock()
        if self._last_request is None or now - self._last_request >= (
            self._keyframe_interval
        ):
            self._send_pli(now)
        elif self._deferred is None:
            delay = self._keyframe_interval - (now - self._last_request)
            loop = asyncio.get_running_loop()
            self._deferred = loop.call_later(delay, self._send_deferred)

    def close(self) -> None:
        """Cancel a deferred keyframe request."""
        if self._deferred is not None:
            self._deferred.cancel()
            self._deferred = None

    def _send_deferred(self) -> None:
        self._deferred = None
        self._send_pli(self._clock())

    def _send_pli(self, now: float) -> None:
        self._last_request = now
        if self._ssrc is None:
            # Nothing received yet: send on the first packet.
            self._request_pending = True
            return
        self._request_pending = False
        self.keyframe_requests_sent += 1
        task = asyncio.ensure_future(self.receiver._send_rtcp_pli(self._ssrc))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_packet(self, packet: Any) -> None:
        self._ssrc = packet.ssrc
        if self._request_pending:
            self._send_pli(self._clock())
        if self._on_packet_seen is not None:
            try:
                self._on_packet_seen(packet)
            except Exception:
                logger.exception("Packet consumer of %s receiver failed", self.kind)

    def _codec_name(self, payload_type: int) -> str:
        codecs = self.receiver._RTCRtpReceiver__codecs  # type: ignore[attr-defined]
        codec = codecs.get(payload_type)
        return codec.name if codec is not None else ""

    def _on_jitter_frame(self, payload_type: int, data: bytes, timestamp: int) -> None:
        frame = make_frame(self.kind, self._codec_name(payload_type), data, timestamp)
        self.frames += 1
        self.bytes += len(data)
        if frame.keyframe and self.kind == "video":
            self.keyframes += 1
            self.width, self.height = frame.width, frame.height
        try:
            self._on_frame(frame)
        except Exception:
            logger.exception("Frame consumer of %s receiver failed", self.kind)

    def _admit_to_decoder(self, item: tuple[Any, Any]) -> bool:
        if not self._decoding:
            return False
        if self._awaiting_keyframe:
            codec, jitter_frame = item
            if vp8_keyframe_size(jitter_frame.data) is None and (
                codec.name.lower() == "vp8"
            ):
                return False
            self._awaiting_keyframe = False
        self.frames_to_decoder += 1
        return True


_original_send_keyframe: Callable[[RTCRtpSender], None] | None = None


def _send_keyframe(sender: RTCRtpSender) -> None:
    assert _original_send_keyframe is not None
    _original_send_keyframe(sender)
    track = sender.track
    if isinstance(track, EncodedTrack):
        track._keyframe_requested()


def _install_sender_hook() -> None:
    # The sender answers PLI/FIR only by flagging its encoder, which the
    # pre-encoded path never reads; the hook tells the EncodedTrack instead.
    global _original_send_keyframe
    if _original_send_keyframe is None:
        _original_send_keyframe = RTCRtpSender._send_keyframe
        setattr(RTCRtpSender, "_send_keyframe", _send_keyframe)  # noqa: B010


_install_sender_hook()


class EncodedTrack(MediaStreamTrack):
    """A track whose frames are already encoded, sent without re-encoding.

    Timestamps continue from the pushed frames' RTP timestamps (unwrapped),
    so the sender keeps their spacing. When more than ``max_queue`` frames
    wait, video drops everything up to the next keyframe and asks for one.
    """

    def __init__(self, kind: str, *, max_queue: int = 64) -> None:
        super().__init__()
        if kind not in ("audio", "video"):
            raise ValueError(f"unknown track kind {kind!r}")
        self.kind = kind
        self.on_keyframe_request: Callable[[], None] | None = None
        self._clock_rate = VIDEO_CLOCK_RATE if kind == "video" else AUDIO_CLOCK_RATE
        self._time_base = fractions.Fraction(1, self._clock_rate)
        self._queue: deque[EncodedFrame] = deque()
        self._max_queue = max_queue
        self._wakeup: asyncio.Event = asyncio.Event()
        self._awaiting_keyframe = False
        self._first_timestamp: int | None = None
        self._last_timestamp = 0
        self._pts = 0

        self.frames_pushed = 0
        self.frames_sent = 0
        self.bytes_sent = 0
        self.frames_dropped = 0
        self.keyframe_requests = 0

    def push(self, frame: EncodedFrame) -> None:
        """Queue one encoded frame for sending."""
        if self.readyState != "live":
            return
        self.frames_pushed += 1
        if self._awaiting_keyframe:
            if not frame.keyframe:
                self.frames_dropped += 1
                return
            self._awaiting_keyframe = False
        if len(self._queue) >= self._max_queue:
            self.frames_dropped += len(self._queue)
            self._queue.clear()
            if self.kind == "video" and not frame.keyframe:
                self.frames_dropped += 1
                self._awaiting_keyframe = True
                self._keyframe_requested()
                return
        self._queue.append(frame)
        self._wakeup.set()

    async def recv(self) -> av.Packet[Any]:
        """The next packet for the sender, with ``pts`` and ``time_base`` set."""
        while not self._queue:
            if self.readyState != "live":
                raise MediaStreamError
            self._wakeup.clear()
            await self._wakeup.wait()
        if self.readyState != "live":
            raise MediaStreamError
        frame = self._queue.popleft()

        packet = av.Packet(frame.data)
        packet.pts = self._next_pts(frame.timestamp)
        packet.time_base = self._time_base
        self.frames_sent += 1
        self.bytes_sent += len(frame.data)
        return packet

    def stop(self) -> None:
        super().stop()
        self._queue.clear()
        self._wakeup.set()

    def _next_pts(self, timestamp: int) -> int:
        if self._first_timestamp is None:
            self._first_timestamp = timestamp
            self._last_timestamp = timestamp
            return 0
        # A signed 32-bit step, so a wrap or a small reordering stays local.
        step = (timestamp - self._last_timestamp) & 0xFFFFFFFF
        if step >= 1 << 31:
            step -= 1 << 32
        self._last_timestamp = timestamp
        self._pts = max(self._pts + step, self._pts + 1)
        return self._pts

    def _keyframe_requested(self) -> None:
        self.keyframe_requests += 1
        callback = self.on_keyframe_request
        if callback is not None:
            try:
                callback()
            except Exception:
                logger.exception(
                    "Keyframe request handler of %s track failed", self.kind
                )
