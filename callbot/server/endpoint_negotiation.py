"""The server's negotiation state of one endpoint (ExWebRTC endpoint 0.2.0, §4.2).

Sans-I/O: methods take what happened and return what to send
(:class:`TracksAdded`, :class:`OfferData`, :class:`TracksRemoved`) and what to
do (:class:`Subscribe`, :class:`Detach`). The endpoint around it applies offers
to a peer connection and tells this state where outbound tracks were placed.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

KINDS = ("audio", "video")


class TrackStatus(enum.Enum):
    PENDING = "pending"
    NEGOTIATING = "negotiating"
    SUBSCRIBING = "subscribing"
    SUBSCRIBED = "subscribed"


@dataclass(frozen=True)
class RemoteTrack:
    """A track another endpoint publishes."""

    track_id: str
    origin: str
    kind: str
    metadata: Any = None


@dataclass
class OutboundTrack:
    """A remote track destined for this endpoint's client."""

    track: RemoteTrack
    status: TrackStatus
    mid: str | None = None
    announced: bool = False


@dataclass(frozen=True)
class TracksAdded:
    origin: str
    tracks: tuple[RemoteTrack, ...]


@dataclass(frozen=True)
class OfferData:
    tracks_types: dict[str, int]


@dataclass(frozen=True)
class TracksRemoved:
    origin: str
    track_ids: tuple[str, ...]


@dataclass(frozen=True)
class Subscribe:
    track_ids: tuple[str, ...]


@dataclass(frozen=True)
class Detach:
    """Take these tracks off their transceivers (mid ``None``: never placed)."""

    placements: tuple[tuple[str, str | None], ...]


Output = TracksAdded | OfferData | TracksRemoved | Subscribe | Detach


class EndpointNegotiation:
    """Negotiation flags, outbound tracks and mids of one endpoint."""

    def __init__(self) -> None:
        self.negotiating = False
        self.queued = False
        self.outbound: dict[str, OutboundTrack] = {}
        self.removed_tracks: dict[str, int] = dict.fromkeys(KINDS, 0)
        self.own_mids: dict[str, str] = {}
        # An offer was answered in the running round; only then can the
        # round be done (a connection flapping back to "connected" before
        # the client's offer must not finish it).
        self._answered = False

    # -- what the server announces

    def tracks_types(self) -> dict[str, int]:
        """``offerData.tracksTypes``: outbound tracks plus removed ones, per kind."""
        counts = dict(self.removed_tracks)
        for outbound in self.outbound.values():
            counts[outbound.track.kind] = counts.get(outbound.track.kind, 0) + 1
        return counts

    def mid_to_track_id(self) -> dict[str, str]:
        """The answer's map: the client's sending mids and the outbound mids."""
        result = dict(self.own_mids)
        for track_id, outbound in self.outbound.items():
            if outbound.mid is not None:
                result[outbound.mid] = track_id
        return result

    # -- inputs

    def tracks_available(self, tracks: list[RemoteTrack]) -> list[Output]:
        """Tracks of other endpoints became available to this endpoint."""
        new = [t for t in tracks if t.track_id not in self.outbound]
        for track in new:
            self.outbound[track.track_id] = OutboundTrack(track, TrackStatus.PENDING)
        if not new or self.negotiating:
            return []
        return self._start_round()

    def renegotiate_requested(self) -> list[Output]:
        """The client sent ``renegotiateTracks``."""
        if self.negotiating:
            self.queued = True
            return []
        return self._start_round()

    def tracks_to_place(self) -> list[OutboundTrack]:
        """Negotiating tracks that still need a transceiver in this offer."""
        return [
            o
            for o in self.outbound.values()
            if o.status is TrackStatus.NEGOTIATING and o.mid is None
        ]

    def placed(self, track_id: str, mid: str) -> None:
        """An outbound track was put on the transceiver with this mid."""
        self.outbound[track_id].mid = mid

    def offer_answered(self, own_mids: dict[str, str]) -> None:
        """An offer was applied and answered; ``own_mids`` are its sending mids."""
        self.own_mids = dict(own_mids)
        if self.negotiating:
            self._answered = True

    def negotiation_done(self) -> list[Output]:
        """The peer connection is connected and stable after an answer."""
        if not self.negotiating or not self._answered:
            return []
        outputs: list[Output] = []
        ready = [
            track_id
            for track_id, o in self.outbound.items()
            if o.status is TrackStatus.NEGOTIATING and o.mid is not None
        ]
        for track_id in ready:
            self.outbound[track_id].status = TrackStatus.SUBSCRIBING
        if ready:
            outputs.append(Subscribe(tuple(ready)))

        pending = any(o.status is TrackStatus.PENDING for o in self.outbound.values())
        if pending or self.queued:
            outputs += self._start_round()
        else:
            self.negotiating = False
            self._answered = False
        return outputs

    def subscribed(self, track_id: str) -> None:
        """The relay confirmed the subscription."""
        outbound = self.outbound.get(track_id)
        if outbound is not None and outbound.status is TrackStatus.SUBSCRIBING:
            outbound.status = TrackStatus.SUBSCRIBED

    def remote_tracks_removed(self, track_ids: list[str]) -> list[Output]:
        """Tracks of other endpoints are gone; no ``offerData`` follows."""
        removed = [self.outbound.pop(t) for t in track_ids if t in self.outbound]
        if not removed:
            return []
        by_origin: dict[str, list[str]] = {}
        for outbound in removed:
            self.removed_tracks[outbound.track.kind] += 1
            if outbound.announced:
                by_origin.setdefault(outbound.track.origin, []).append(
                    outbound.track.track_id
                )
        outputs: list[Output] = [
            TracksRemoved(origin, tuple(ids)) for origin, ids in by_origin.items()
        ]
        outputs.append(
            Detach(tuple((o.track.track_id, o.mid) for o in removed)),
        )
        return outputs

    # -- internals

    def _start_round(self) -> list[Output]:
        outputs: list[Output] = []
        by_origin: dict[str, list[RemoteTrack]] = {}
        for outbound in self.outbound.values():
            if outbound.status is TrackStatus.PENDING:
                outbound.status = TrackStatus.NEGOTIATING
                outbound.announced = True
                by_origin.setdefault(outbound.track.origin, []).append(outbound.track)
        for origin, tracks in by_origin.items():
            outputs.append(TracksAdded(origin, tuple(tracks)))
        outputs.append(OfferData(self.tracks_types()))
        self.negotiating = True
        self.queued = False
        self._answered = False
        logger.debug("Negotiation round started: %s", outputs[-1])
        return outputs
