"""What a receiver sees on the wire: sequence numbers, loss before and after repair.

aiortc counts a retransmitted packet as received, so its ``packetsLost`` is
the loss after NACK/RTX repair. QA also wants the loss on the wire. A
:class:`RtpWatch` is handed every RTP packet of one receiver before aiortc
touches it: media packets by their own sequence number, RTX packets by the
original sequence number they carry (RFC 4588). A sequence number missing
from the media stream is wire loss; one that later arrives by RTX (or late on
the media SSRC, as a retransmission without RTX does) is repaired.

:class:`SequenceTracker` is the sans-I/O core; :func:`watch_receiver`
attaches a watch to an aiortc ``RTCRtpReceiver``. Pinned to aiortc 1.16.0:
it replaces the receiver's ``_handle_rtp_packet`` on the instance, reads its
private codec table (``_RTCRtpReceiver__codecs``) and, for the round-trip
time, the senders of its transport's RTP router.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiortc import RTCRtpReceiver
from aiortc.codecs import is_rtx

logger = logging.getLogger(__name__)

# Missing sequence numbers further behind than this are given up on.
REPAIR_WINDOW = 1000


@dataclass(frozen=True)
class LossCounts:
    """Packets of one stream: expected, lost on the wire, lost after repair."""

    expected: int
    received: int
    wire_lost: int
    repaired: int

    @property
    def lost(self) -> int:
        return self.wire_lost - self.repaired

    @property
    def wire_loss(self) -> float:
        """Share of packets the wire lost (before NACK/RTX repair)."""
        return self.wire_lost / self.expected if self.expected else 0.0

    @property
    def loss(self) -> float:
        """Share of packets still missing after repair."""
        return self.lost / self.expected if self.expected else 0.0


class SequenceTracker:
    """Sequence numbers of one RTP stream, unwrapped, with gaps and repairs."""

    def __init__(self) -> None:
        self.base: int | None = None
        self.highest: int | None = None
        self.received = 0
        self.repaired = 0
        self.duplicates = 0
        self._missing: set[int] = set()
        self._gone = 0  # missing numbers given up on (never repaired)
        self._wire_lost = 0

    def _extend(self, seq: int) -> int:
        if self.highest is None:
            return seq
        # The candidate nearest the highest number seen.
        candidate = (self.highest & ~0xFFFF) | seq
        if candidate - self.highest > 0x8000:
            candidate -= 0x10000
        elif self.highest - candidate > 0x8000:
            candidate += 0x10000
        return candidate

    def media(self, seq: int) -> None:
        """A packet arrived on the media SSRC with sequence number ``seq``."""
        extended = self._extend(seq)
        if self.highest is None or self.base is None:
            self.base = self.highest = extended
            self.received += 1
            return
        if extended > self.highest:
            for missing in range(self.highest + 1, extended):
                self._missing.add(missing)
            self._wire_lost += extended - self.highest - 1
            self.highest = extended
            self.received += 1
            self._forget_old()
        elif extended in self._missing:
            # Late on the media SSRC: a retransmission without RTX.
            self._missing.discard(extended)
            self.repaired += 1
        elif extended >= self.base:
            self.duplicates += 1

    def retransmission(self, seq: int) -> None:
        """An RTX packet arrived carrying original sequence number ``seq``."""
        if self.highest is None:
            return
        extended = self._extend(seq)
        if extended in self._missing:
            self._missing.discard(extended)
            self.repaired += 1

    def _forget_old(self) -> None:
        if self.highest is None:
            return
        limit = self.highest - REPAIR_WINDOW
        old = [s for s in self._missing if s < limit]
        for seq in old:
            self._missing.discard(seq)
        self._gone += len(old)

    def counts(self) -> LossCounts:
        if self.base is None or self.highest is None:
            return LossCounts(0, 0, 0, 0)
        expected = self.highest - self.base + 1
        return LossCounts(expected, self.received, self._wire_lost, self.repaired)


@dataclass
class RtpWatch:
    """Counters of one receiver: sequence numbers, bytes and interarrival jitter."""

    tracker: SequenceTracker
    bytes: int = 0
    packets: int = 0
    retransmissions: int = 0
    jitter: float = 0.0
    """RFC 3550 interarrival jitter of the media packets, in seconds."""
    first_packet_at: float | None = None
    """Wall-clock time of the first packet (media flows: ICE and DTLS are up)."""
    _last_transit: float | None = None
    _last_timestamp: int | None = None

    def media(
        self,
        seq: int,
        timestamp: int,
        size: int,
        arrival: float,
        clock_rate: int,
    ) -> None:
        """A media packet (``arrival`` in seconds, ``timestamp`` in RTP units)."""
        self.tracker.media(seq)
        self.packets += 1
        self.bytes += size
        if timestamp == self._last_timestamp:
            return  # the packets of one frame share the timestamp
        transit = arrival - timestamp / clock_rate
        if self._last_transit is not None and self._last_timestamp is not None:
            step = (timestamp - self._last_timestamp) & 0xFFFFFFFF
            if step < 0x80000000:
                difference = abs(transit - self._last_transit)
                if difference < 10.0:  # not across an RTP timestamp wrap
                    self.jitter += (difference - self.jitter) / 16
        self._last_transit = transit
        self._last_timestamp = timestamp

    def retransmission(self, original_seq: int, size: int) -> None:
        self.tracker.retransmission(original_seq)
        self.retransmissions += 1
        self.bytes += size


def watch_receiver(receiver: RTCRtpReceiver) -> RtpWatch:
    """Watch every RTP packet ``receiver`` gets, before aiortc handles it."""
    existing = getattr(receiver, "_callbot_watch", None)
    if isinstance(existing, RtpWatch):
        return existing
    watch = RtpWatch(SequenceTracker())
    codecs: dict[int, Any] = receiver._RTCRtpReceiver__codecs  # type: ignore[attr-defined]
    original: Callable[..., Awaitable[None]] = receiver._handle_rtp_packet

    async def handle(packet: Any, arrival_time_ms: int) -> None:
        if watch.first_packet_at is None:
            watch.first_packet_at = time.time()
        codec = codecs.get(packet.payload_type)
        if codec is not None:
            size = len(packet.payload) + 12
            if is_rtx(codec):
                if len(packet.payload) >= 2:
                    osn = int.from_bytes(packet.payload[:2], "big")
                    watch.retransmission(osn, size)
            else:
                watch.media(
                    packet.sequence_number,
                    packet.timestamp,
                    size,
                    arrival_time_ms / 1000,
                    codec.clockRate,
                )
        await original(packet, arrival_time_ms=arrival_time_ms)

    receiver._handle_rtp_packet = handle  # type: ignore[method-assign]
    receiver._callbot_watch = watch  # type: ignore[attr-defined]
    return watch


async def round_trip_time(receiver: RTCRtpReceiver) -> float | None:
    """The latest RTCP round-trip time (s) of any sender on ``receiver``'s transport.

    aiortc measures it only on senders (from receiver reports), so a bot
    that publishes nothing has none.
    """
    router = getattr(receiver.transport, "_rtp_router", None)
    senders = list(getattr(router, "senders", {}).values())
    for sender in senders:
        stats = await sender.getStats()
        for entry in stats.values():
            if getattr(entry, "type", None) == "remote-inbound-rtp":
                rtt = getattr(entry, "roundTripTime", None)
                if isinstance(rtt, int | float) and rtt > 0:
                    return float(rtt)
    return None
