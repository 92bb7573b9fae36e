"""The client side of Membrane's negotiation, without I/O.

The server asks for offers (``offerData``); the bot offers, the server answers.
:class:`ClientNegotiation` takes parsed server media events and the results of
the peer connection's work (the offer it created, its local candidates) and
returns what to do next as :data:`Action` values. It keeps the rules of
membrane-media-events.md §4.4: one ``connect``; per ``offerData`` exactly
``max(0, tracksTypes[kind] - recvonly transceivers ever created)`` new
``recvonly`` transceivers and one offer; no second offer before the answer; no
local candidate before the first offer; remote candidates held until the first
answer is applied; remote media mapped mid → track id → endpoint → user.
"""

from __future__ import annotations

import enum
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from callbot.errors import NegotiationError
from callbot.rtc import media_events as me
from callbot.rtc.sdp import media_mids, rewrite_candidate, rewrite_sdp_foundations

logger = logging.getLogger(__name__)

KINDS = ("audio", "video")
# The JS library's default bitrates when the sender has no maxBitrate.
DEFAULT_BITRATES = {"audio": 50_000, "video": 2_500_000}


def user_id_of(endpoint_id: str) -> str:
    """The user id inside an endpoint id ``"<user_id>_<N>"`` (cut at the last ``_``)."""
    user_id, sep, _ = endpoint_id.rpartition("_")
    return user_id if sep else endpoint_id


@dataclass(frozen=True)
class LocalTrack:
    """A track the bot publishes."""

    kind: str
    track_id: str
    metadata: dict[str, Any] = field(default_factory=dict)
    bitrate: int = 0


@dataclass(frozen=True)
class RemoteTrack:
    """A track of another endpoint that the server sends to the bot."""

    track_id: str
    endpoint_id: str
    mid: str | None = None

    @property
    def user_id(self) -> str:
        return user_id_of(self.endpoint_id)


# ---------------------------------------------------------------- actions


@dataclass(frozen=True)
class SendEvent:
    """Send this media event to the server."""

    event: me.ClientMediaEvent


@dataclass(frozen=True)
class PrepareOffer:
    """Build the peer connection's next offer and report it to :meth:`offer_created`.

    Create the peer connection first if ``create_peer``; add a ``sendonly``
    transceiver for each of ``add_sendonly``; add ``add_recvonly[kind]`` new
    ``recvonly`` transceivers, audio first, then video.
    """

    create_peer: bool
    add_sendonly: tuple[LocalTrack, ...]
    add_recvonly: dict[str, int]


@dataclass(frozen=True)
class ApplyAnswer:
    """Set ``sdp`` as the remote description."""

    sdp: str


@dataclass(frozen=True)
class ApplyRemoteCandidate:
    """Add a remote ICE candidate; ``sdp_mid`` is resolved where it can be."""

    candidate: str
    sdp_mid: str | None
    sdp_mline_index: int | None


@dataclass(frozen=True)
class RemoteTrackAnnounced:
    """The server announced a remote track (media follows on its mid)."""

    track: RemoteTrack


@dataclass(frozen=True)
class RemoteTrackEnded:
    """A remote track is gone: stop consuming it."""

    track: RemoteTrack


@dataclass(frozen=True)
class EndpointLeft:
    """Another endpoint left the WebRTC layer."""

    endpoint_id: str


Action = (
    SendEvent
    | PrepareOffer
    | ApplyAnswer
    | ApplyRemoteCandidate
    | RemoteTrackAnnounced
    | RemoteTrackEnded
    | EndpointLeft
)


class State(enum.Enum):
    NEW = "new"
    CONNECTING = "connecting"  # connect sent, waiting for connected
    STABLE = "stable"  # connected, no offer outstanding
    OFFERING = "offering"  # waiting for the peer connection's offer
    AWAITING_ANSWER = "awaiting_answer"  # offer sent, waiting for sdpAnswer


class ClientNegotiation:
    """Negotiation state of one endpoint (one ``join_call``)."""

    def __init__(
        self,
        kinds: Sequence[str] = KINDS,
        *,
        track_metadata: Callable[[str], dict[str, Any]] | None = None,
        new_uuid: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        """Args:
        kinds: the kinds of the local tracks to publish in the first offer.
        track_metadata: metadata of a local track by kind.
        new_uuid: source of the uuid part of local track ids.
        """
        for kind in kinds:
            if kind not in KINDS:
                raise ValueError(f"unknown track kind {kind!r}")
        self._kinds = tuple(kinds)
        self._track_metadata = track_metadata or (
            lambda kind: {"type": kind, "active": True}
        )
        self._new_uuid = new_uuid

        self.state = State.NEW
        self.endpoint_id: str | None = None
        self.local_tracks: list[LocalTrack] = []
        self._offered: set[str] = set()  # local track ids that went into an offer
        self._local_mids: dict[str, str] = {}  # local track id -> mid
        self._peer_created = False
        self._recvonly = dict.fromkeys(KINDS, 0)  # recvonly transceivers ever created
        self._pending_offer_data: list[me.OfferData] = []
        self._offers_sent = 0
        self._answered = False
        self._offer_mids: list[str | None] = []
        self._mid_to_track_id: dict[str, str] = {}
        self._remote: dict[str, RemoteTrack] = {}  # track id -> remote track
        self._queued_remote: list[me.RemoteCandidate] = []
        self._queued_local: list[tuple[str, str | None, int | None]] = []

    # ------------------------------------------------------------ queries

    @property
    def remote_tracks(self) -> dict[str, RemoteTrack]:
        return dict(self._remote)

    @property
    def recvonly_created(self) -> dict[str, int]:
        return dict(self._recvonly)

    @property
    def offers_sent(self) -> int:
        return self._offers_sent

    def remote_track_for_mid(self, mid: str | None) -> RemoteTrack | None:
        """The live remote track the answer put on ``mid``, if any."""
        if mid is None:
            return None
        track_id = self._mid_to_track_id.get(mid)
        if track_id is None:
            return None
        return self._remote.get(track_id)

    def local_track_for_mid(self, mid: str | None) -> LocalTrack | None:
        for track in self.local_tracks:
            if mid is not None and self._local_mids.get(track.track_id) == mid:
                return track
        return None

    # ------------------------------------------------------------ inputs

    def connect(self, metadata: dict[str, Any]) -> list[Action]:
        """Start: send ``connect`` (once per endpoint)."""
        if self.state is not State.NEW:
            raise NegotiationError("connect was already sent for this endpoint")
        self.state = State.CONNECTING
        return [SendEvent(me.Connect(metadata=metadata))]

    def receive(self, event: me.ServerMediaEvent) -> list[Action]:
        """Handle one media event from the server."""
        if isinstance(event, me.Connected):
            return self._on_connected(event)
        if isinstance(event, me.OfferData):
            return self._on_offer_data(event)
        if isinstance(event, me.SdpAnswer):
            return self._on_answer(event)
        if isinstance(event, me.RemoteCandidate):
            return self._on_remote_candidate(event)
        if isinstance(event, me.TracksAdded):
            return self._on_tracks_added(event.endpoint_id, event.track_ids())
        if isinstance(event, me.TracksRemoved):
            return self._end_tracks(t for t in event.track_ids if t in self._remote)
        if isinstance(event, me.EndpointRemoved):
            actions = self._end_tracks(
                t.track_id for t in self._remote.values() if t.endpoint_id == event.id
            )
            return [*actions, EndpointLeft(event.id)]
        return []

    def offer_created(self, sdp: str, mids: dict[str, str]) -> list[Action]:
        """The peer connection created (and set) the offer asked for.

        Args:
            sdp: the local description's SDP, candidates included.
            mids: local track id -> mid of its sending transceiver.
        """
        if self.state is not State.OFFERING:
            raise NegotiationError(f"no offer was asked for (state {self.state.value})")

        self._local_mids.update(mids)
        offered = [t for t in self.local_tracks if t.track_id in self._offered]
        missing = [t.track_id for t in offered if t.track_id not in self._local_mids]
        if missing:
            raise NegotiationError(f"sending tracks without a mid: {missing}")

        self._offer_mids = media_mids(sdp)
        offer = me.SdpOffer(
            sdp=rewrite_sdp_foundations(sdp),
            track_id_to_metadata={t.track_id: t.metadata for t in offered},
            track_id_to_bitrate={
                t.track_id: t.bitrate or DEFAULT_BITRATES[t.kind] for t in offered
            },
            mid_to_track_id={self._local_mids[t.track_id]: t.track_id for t in offered},
        )
        self.state = State.AWAITING_ANSWER
        self._offers_sent += 1

        actions: list[Action] = [SendEvent(offer)]
        queued, self._queued_local = self._queued_local, []
        for candidate, mid, index in queued:
            actions.extend(self.local_candidate(candidate, mid, index))
        return actions

    def local_candidate(
        self, candidate: str, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> list[Action]:
        """A local ICE candidate to trickle (held until the first offer is sent)."""
        if self._offers_sent == 0:
            self._queued_local.append((candidate, sdp_mid, sdp_mline_index))
            return []
        if not candidate:
            # The real server's client library never signals end-of-candidates.
            return []
        index = sdp_mline_index
        if index is None:
            index = (
                self._offer_mids.index(sdp_mid) if sdp_mid in self._offer_mids else 0
            )
        mid = sdp_mid if sdp_mid is not None else self._mid_at(index) or str(index)
        event = me.LocalCandidate(
            candidate=rewrite_candidate(candidate), sdp_mid=mid, sdp_mline_index=index
        )
        return [SendEvent(event)]

    # ------------------------------------------------------------ handlers

    def _on_connected(self, event: me.Connected) -> list[Action]:
        if self.state is not State.CONNECTING:
            logger.debug("connected ignored in state %s", self.state.value)
            return []
        self.endpoint_id = event.id
        self.local_tracks = [
            LocalTrack(
                kind=kind,
                track_id=f"{event.id}:{self._new_uuid()}",
                metadata=self._track_metadata(kind),
            )
            for kind in self._kinds
        ]
        self.state = State.STABLE

        actions: list[Action] = []
        others_publish = False
        for endpoint in event.other_endpoints:
            ids = list(endpoint.tracks) or list(endpoint.track_id_to_metadata)
            others_publish = others_publish or bool(ids)
            actions.extend(self._on_tracks_added(endpoint.id, ids))
        # With others publishing, the server sends offerData by itself and the
        # local tracks go into that offer; otherwise ask for a round.
        if self.local_tracks and not others_publish:
            actions.append(SendEvent(me.RenegotiateTracks()))
        return actions

    def _on_offer_data(self, event: me.OfferData) -> list[Action]:
        if self.state in (State.NEW, State.CONNECTING):
            logger.warning("offerData before connected ignored")
            return []
        if self.state is not State.STABLE:
            # One offer per offerData, and never a second before the answer.
            self._pending_offer_data.append(event)
            return []

        add_recvonly: dict[str, int] = {}
        for kind in KINDS:
            wanted = event.tracks_types.get(kind, 0)
            add_recvonly[kind] = max(0, wanted - self._recvonly[kind])
            self._recvonly[kind] += add_recvonly[kind]
        unknown = set(event.tracks_types) - set(KINDS)
        if unknown:
            logger.warning("offerData asks for unknown kinds %s", sorted(unknown))

        new_local = tuple(
            t for t in self.local_tracks if t.track_id not in self._offered
        )
        self._offered.update(t.track_id for t in new_local)
        create_peer = not self._peer_created
        self._peer_created = True
        self.state = State.OFFERING
        return [PrepareOffer(create_peer, new_local, add_recvonly)]

    def _on_answer(self, event: me.SdpAnswer) -> list[Action]:
        if self.state is not State.AWAITING_ANSWER:
            logger.warning("sdpAnswer without an offer ignored")
            return []
        self._mid_to_track_id = dict(event.mid_to_track_id)
        for mid, track_id in self._mid_to_track_id.items():
            track = self._remote.get(track_id)
            if track is not None:
                self._remote[track_id] = replace(track, mid=mid)
        self.state = State.STABLE

        actions: list[Action] = [ApplyAnswer(event.sdp)]
        if not self._answered:
            self._answered = True
            queued, self._queued_remote = self._queued_remote, []
            for candidate in queued:
                actions.extend(self._on_remote_candidate(candidate))
        if self._pending_offer_data:
            actions.extend(self._on_offer_data(self._pending_offer_data.pop(0)))
        return actions

    def _on_remote_candidate(self, event: me.RemoteCandidate) -> list[Action]:
        if not event.candidate.startswith("candidate:"):
            # "" is end-of-candidates; other strings are ignored like the server.
            return []
        if not self._answered:
            self._queued_remote.append(event)
            return []
        mid = event.sdp_mid
        if mid is None and event.sdp_mline_index is not None:
            mid = self._mid_at(event.sdp_mline_index)
        index = event.sdp_mline_index
        if index is None and mid is not None and mid in self._offer_mids:
            index = self._offer_mids.index(mid)
        if mid is None and index is None:
            index = 0
            mid = self._mid_at(0)
        return [ApplyRemoteCandidate(event.candidate, mid, index)]

    def _on_tracks_added(self, endpoint_id: str, track_ids: list[str]) -> list[Action]:
        actions: list[Action] = []
        reverse = {t: m for m, t in self._mid_to_track_id.items()}
        for track_id in track_ids:
            if track_id in self._remote:
                continue
            track = RemoteTrack(track_id, endpoint_id, reverse.get(track_id))
            self._remote[track_id] = track
            actions.append(RemoteTrackAnnounced(track))
        return actions

    def _end_tracks(self, track_ids: Any) -> list[Action]:
        actions: list[Action] = []
        for track_id in list(track_ids):
            track = self._remote.pop(track_id, None)
            if track is not None:
                actions.append(RemoteTrackEnded(track))
        return actions

    def _mid_at(self, index: int) -> str | None:
        if 0 <= index < len(self._offer_mids):
            return self._offer_mids[index]
        return None
