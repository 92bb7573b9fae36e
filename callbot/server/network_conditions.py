"""Network conditions per track on the reference server: loss, delay, pause.

Loss and delay apply to the RTP packets the server sends for one published
track to its subscribers, at the point where a packet leaves the
subscriber's ``RTCRtpSender`` for the transport: after the sender has kept
the packet for retransmission, so a dropped packet can be asked for again
with a NACK and repaired by RTX, as on a real network. A pause applies to
the relay's frames, before they are packetized, as an SFU that stops
forwarding does: no sequence numbers are spent on the paused frames.

- ``loss``: the share of first transmissions dropped at random;
  retransmissions (RTX) pass.
- ``delay_ms``: every packet, RTX included, leaves this much later.
- ``pause_ms``: forwarding stops for this long from the moment the setting
  is applied; video resumes at the next keyframe, asked of the publisher
  when the pause ends.

:class:`TrackImpairment` and :class:`PauseGate` are the sans-I/O decisions
(time and randomness passed in); :class:`TransportImpairer` and
:func:`gate_frames` attach them. Pinned to aiortc 1.16.0: the impairer wraps
``RTCDtlsTransport._send_rtp`` of the subscriber's transport (shared by
every m-line under BUNDLE, so packets are told apart by SSRC) and reads
``RTCRtpSender._ssrc`` and ``_rtx_ssrc``; the gate wraps ``push`` of the
subscriber's :class:`~callbot.rtc.tap.EncodedTrack`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiortc import RTCRtpSender
from pydantic import BaseModel, ConfigDict, Field

from callbot.rtc.tap import EncodedFrame, EncodedTrack

logger = logging.getLogger(__name__)

SendRtp = Callable[[bytes], Awaitable[None]]
KEYFRAME_RETRY = 1.0
"""Seconds between keyframe requests while video waits to resume."""


class NetworkConditions(BaseModel):
    """What the server's relay does to one track's packets."""

    model_config = ConfigDict(extra="forbid")

    loss: float = Field(default=0.0, ge=0.0, le=1.0)
    delay_ms: float = Field(default=0.0, ge=0.0, le=10_000.0)
    pause_ms: float = Field(default=0.0, ge=0.0, le=600_000.0)

    @property
    def clean(self) -> bool:
        return self.loss == 0.0 and self.delay_ms == 0.0 and self.pause_ms == 0.0


@dataclass
class ImpairmentCounters:
    """Packets seen by one track's impairment."""

    packets: int = 0
    dropped: int = 0
    delayed: int = 0
    retransmissions: int = 0
    paused_frames: int = 0
    """Frames not forwarded: in a pause, or after it while waiting for a keyframe."""


class TrackImpairment:
    """Decides, packet by packet, whether and when a packet leaves (sans-I/O)."""

    def __init__(
        self,
        conditions: NetworkConditions,
        now: float,
        rng: random.Random | None = None,
    ) -> None:
        self.rng = rng or random.Random()
        self.counters = ImpairmentCounters()
        self.conditions = conditions
        self.paused_until = 0.0
        self.set(conditions, now)

    def set(self, conditions: NetworkConditions, now: float) -> None:
        """New conditions from ``now`` (seconds); a pause starts now."""
        self.conditions = conditions
        self.paused_until = (
            now + conditions.pause_ms / 1000 if conditions.pause_ms else 0
        )

    def decide(self, now: float, retransmission: bool) -> float | None:
        """None to drop the packet, else the seconds to hold it before sending."""
        counters = self.counters
        counters.packets += 1
        if retransmission:
            counters.retransmissions += 1
        # Known limit: retransmissions (RTX) are never lost; every loss is repairable.
        loss = self.conditions.loss
        if not retransmission and loss > 0 and self.rng.random() < loss:
            counters.dropped += 1
            return None
        delay = self.conditions.delay_ms / 1000
        if delay > 0:
            counters.delayed += 1
        return delay

    def paused(self, now: float) -> bool:
        return now < self.paused_until


class PauseGate:
    """Whether the relay forwards a frame to one subscriber (sans-I/O).

    After a pause, video resumes at a keyframe: the first frame after the
    pause asks for one and nothing is forwarded until it comes.
    """

    def __init__(self, impairment: TrackImpairment, kind: str) -> None:
        self.impairment = impairment
        self.kind = kind
        self._resuming = False
        self._asked_at: float | None = None

    def admit(self, now: float, keyframe: bool) -> tuple[bool, bool]:
        """(forward the frame, ask the publisher for a keyframe now)."""
        counters = self.impairment.counters
        if self.impairment.paused(now):
            self._resuming = self.kind == "video"
            self._asked_at = None
            counters.paused_frames += 1
            return False, False
        if not self._resuming:
            return True, False
        if keyframe:
            self._resuming = False
            return True, False
        counters.paused_frames += 1
        # Ask again each second until a keyframe comes.
        ask = self._asked_at is None or now - self._asked_at >= KEYFRAME_RETRY
        if ask:
            self._asked_at = now
        return False, ask


def gate_frames(
    track: EncodedTrack, impairment: TrackImpairment, clock: Callable[[], float]
) -> None:
    """Hold back ``track``'s frames while ``impairment`` pauses it (once per track)."""
    if getattr(track, "_callbot_gate", None) is not None:
        return
    gate = PauseGate(impairment, track.kind)
    push = track.push

    def gated(frame: EncodedFrame) -> None:
        forward, ask = gate.admit(clock(), frame.keyframe)
        if ask and track.on_keyframe_request is not None:
            track.on_keyframe_request()
        if forward:
            push(frame)

    track.push = gated  # type: ignore[method-assign]
    track._callbot_gate = gate  # type: ignore[attr-defined]


class TransportImpairer:
    """Applies :class:`TrackImpairment` s to one DTLS transport's outgoing RTP."""

    def __init__(self, transport: object, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._by_ssrc: dict[int, tuple[TrackImpairment, bool]] = {}
        self._held: set[asyncio.Task[None]] = set()
        original: SendRtp = transport._send_rtp  # type: ignore[attr-defined]
        self._send = original
        transport._send_rtp = self._send_rtp  # type: ignore[attr-defined]

    @classmethod
    def of(cls, sender: RTCRtpSender, clock: Callable[[], float]) -> TransportImpairer:
        """The impairer of ``sender``'s transport, installed on first use."""
        transport = sender.transport
        found = getattr(transport, "_callbot_impairer", None)
        if isinstance(found, TransportImpairer):
            return found
        impairer = cls(transport, clock)
        transport._callbot_impairer = impairer  # type: ignore[attr-defined]
        return impairer

    def attach(self, sender: RTCRtpSender, impairment: TrackImpairment) -> None:
        """Impair the packets of ``sender`` (its media and its RTX SSRC)."""
        self._by_ssrc[sender._ssrc] = (impairment, False)
        self._by_ssrc[sender._rtx_ssrc] = (impairment, True)

    async def _send_rtp(self, data: bytes) -> None:
        found = None
        # RTCP (payload types 64-95 with the marker bit) is never impaired.
        if len(data) >= 12 and not 192 <= data[1] <= 223:
            found = self._by_ssrc.get(int.from_bytes(data[8:12], "big"))
        if found is None:
            await self._send(data)
            return
        impairment, retransmission = found
        delay = impairment.decide(self._clock(), retransmission)
        if delay is None:
            return
        if delay <= 0:
            await self._send(data)
            return
        loop = asyncio.get_running_loop()
        loop.call_later(delay, self._send_later, data)

    def _send_later(self, data: bytes) -> None:
        task = asyncio.get_running_loop().create_task(self._send_quietly(data))
        self._held.add(task)
        task.add_done_callback(self._held.discard)

    async def _send_quietly(self, data: bytes) -> None:
        # The connection may have closed while the packet was held.
        with contextlib.suppress(ConnectionError):
            await self._send(data)


class NetworkConditionsControl:
    """The reference server's settings per (room, track) and where they apply."""

    def __init__(
        self, clock: Callable[[], float], rng: random.Random | None = None
    ) -> None:
        self._clock = clock
        self.rng = rng or random.Random()
        self._tracks: dict[tuple[str, str], TrackImpairment] = {}

    def impairment(self, room_id: str, track_id: str) -> TrackImpairment | None:
        return self._tracks.get((room_id, track_id))

    def subscriber_hook(self, room_id: str) -> Callable[[str, RTCRtpSender], None]:
        """For a call's engine: impair a new subscriber's sender if its track is."""

        def subscribed(track_id: str, sender: RTCRtpSender) -> None:
            impairment = self._tracks.get((room_id, track_id))
            if impairment is not None:
                self._attach(sender, impairment)

        return subscribed

    def apply(
        self,
        room_id: str,
        track_id: str,
        conditions: NetworkConditions,
        senders: list[RTCRtpSender],
    ) -> TrackImpairment:
        """Set ``track_id``'s conditions and attach them to its ``senders``."""
        now = self._clock()
        impairment = self._tracks.get((room_id, track_id))
        if impairment is None:
            impairment = TrackImpairment(conditions, now, self.rng)
            self._tracks[(room_id, track_id)] = impairment
        else:
            impairment.set(conditions, now)
        for sender in senders:
            self._attach(sender, impairment)
        logger.info(
            "room %s: track %s network conditions %s on %d subscriber(s)",
            room_id,
            track_id,
            conditions.model_dump(),
            len(senders),
        )
        return impairment

    def _attach(self, sender: RTCRtpSender, impairment: TrackImpairment) -> None:
        TransportImpairer.of(sender, self._clock).attach(sender, impairment)
        if isinstance(sender.track, EncodedTrack):
            gate_frames(sender.track, impairment, self._clock)
