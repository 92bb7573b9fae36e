"""The media plane of one call: an ExWebRTC-like endpoint per participant.

Each endpoint speaks the JSON media events of membrane-media-events.md with
its client, answers the client's offers with a server-side aiortc peer
connection, and forwards every track it receives to every other endpoint
without transcoding: encoded frames are taken from the publisher's receiver
(:class:`~callbot.rtc.tap.ReceiverTap`) and handed to each subscriber's
sender (:class:`~callbot.rtc.tap.EncodedTrack`). A subscription starts at a
keyframe, which is requested from the publisher (RTCP PLI) when it starts,
and a subscriber's own PLI/FIR is passed on to the publisher.

The negotiation decisions are made by the sans-I/O
:class:`~callbot.server.endpoint_negotiation.EndpointNegotiation`; this
module applies them to aiortc and sends what they say.
"""

from __future__ import annotations

import asyncio
import json
import logging
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiortc import (
    RTCBundlePolicy,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.sdp import candidate_from_sdp, candidate_to_sdp

from callbot.rtc.icepolicy import (
    IceAddressPolicy,
    install_ice_policy,
    rtc_configuration,
)
from callbot.rtc.icerestart import prepare_ice_restart
from callbot.rtc.tap import EncodedFrame, EncodedTrack, ReceiverTap
from callbot.server import endpoint_events as events
from callbot.server.endpoint_events import EndpointCrash
from callbot.server.endpoint_negotiation import (
    Detach,
    EndpointNegotiation,
    OfferData,
    Output,
    RemoteTrack,
    Subscribe,
    TracksAdded,
    TracksRemoved,
)
from callbot.server.offer_rules import (
    check_offer,
    is_integer_foundation,
    keep_codecs,
    offer_candidates,
    trickle_answer,
)
from callbot.server.settings import ServerSettings
from callbot.server.vad import VadStatus, VoiceActivityDetector

logger = logging.getLogger(__name__)

ENDPOINT_TYPE = "exwebrtc"
ENCODINGS = {"audio": "opus", "video": "VP8"}
# Non-simulcast tracks, as the real server describes them.
SIMULCAST_OFF = {"enabled": False, "activeEncodings": ["h"], "disabledEncodings": []}
# The answerer's view of the client's m-line (aiortc stores the reverse).
_CLIENT_SENDS = ("recvonly", "sendrecv")
_CLIENT_RECEIVES_ONLY = "sendonly"


class EngineListener(Protocol):
    """What the engine tells its call (implemented by the CallServer)."""

    def on_media_event(self, endpoint_id: str, data: str) -> None: ...
    def on_track_added(
        self, endpoint_id: str, track_id: str, kind: str, encoding: str
    ) -> None: ...
    def on_track_removed(self, endpoint_id: str, track_id: str) -> None: ...
    def on_endpoint_removed(self, endpoint_id: str) -> None: ...
    def on_endpoint_crashed(self, endpoint_id: str, reason: str) -> None: ...
    def on_candidate_received(self, endpoint_id: str, candidate: str) -> None: ...


def integer_foundation(foundation: str) -> str:
    """A decimal foundation for a server candidate, as ex_ice writes them."""
    return str(zlib.crc32(foundation.encode()))


@dataclass
class Subscription:
    """One subscriber's sender of a published track."""

    endpoint_id: str
    track: EncodedTrack
    waiting_for_keyframe: bool


@dataclass
class Publication:
    """A track a client publishes, and the subscribers it is forwarded to."""

    track_id: str
    endpoint_id: str
    kind: str
    metadata: Any
    mid: str
    tap: ReceiverTap | None = None
    vad: VoiceActivityDetector | None = None
    subscribers: dict[str, Subscription] = field(default_factory=dict)
    frames: int = 0
    keyframes: int = 0
    bytes: int = 0
    width: int | None = None
    height: int | None = None

    def remote(self) -> RemoteTrack:
        return RemoteTrack(self.track_id, self.endpoint_id, self.kind, self.metadata)

    def info(self) -> dict[str, Any]:
        return {"metadata": self.metadata, "simulcastConfig": dict(SIMULCAST_OFF)}

    def relay(self, frame: EncodedFrame) -> None:
        """Forward one encoded frame to every subscriber, each from a keyframe."""
        self.frames += 1
        self.bytes += len(frame.data)
        if frame.keyframe and frame.kind == "video":
            self.keyframes += 1
            self.width, self.height = frame.width, frame.height
        for subscription in self.subscribers.values():
            if subscription.waiting_for_keyframe:
                if not frame.keyframe:
                    continue
                subscription.waiting_for_keyframe = False
            subscription.track.push(frame)

    def request_keyframe(self) -> None:
        if self.tap is not None and self.kind == "video":
            self.tap.request_keyframe()


class Endpoint:
    """One participant's endpoint: media events, peer connection, tracks."""

    def __init__(self, engine: Engine, endpoint_id: str) -> None:
        self.engine = engine
        self.id = endpoint_id
        self.ready = False
        self.metadata: Any = None
        self.negotiation = EndpointNegotiation()
        self.pc: RTCPeerConnection | None = None
        self.publications: dict[str, Publication] = {}
        self.senders: dict[str, tuple[RTCRtpTransceiver, EncodedTrack]] = {}
        self.received_candidates: list[str] = []
        self.closed = False
        self._answers = 0
        self._queue: asyncio.Queue[events.Event] = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"endpoint {endpoint_id}"
        )

    @property
    def room_id(self) -> str:
        return self.engine.room_id

    # -- events from the client

    def enqueue(self, event: events.Event) -> None:
        if not self.closed:
            self._queue.put_nowait(event)

    async def _run(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                await self._handle(event)
            except EndpointCrash as exc:
                self.engine.crash_endpoint(self.id, exc.reason)
                return
            except Exception as exc:
                logger.exception(
                    "room %s: endpoint %s failed on %s",
                    self.room_id,
                    self.id,
                    type(event).__name__,
                )
                self.engine.crash_endpoint(self.id, f"{type(exc).__name__}: {exc}")
                return
            if self.closed:
                return

    async def _handle(self, event: events.Event) -> None:
        if isinstance(event, events.Connect):
            self._connect(event.metadata)
        elif isinstance(event, events.Disconnect):
            logger.info("room %s: endpoint %s disconnected", self.room_id, self.id)
            self.engine.remove_endpoint(self.id, notify=True)
        elif isinstance(event, events.RenegotiateTracks):
            self.emit(self.negotiation.renegotiate_requested())
        elif isinstance(event, events.SdpOffer):
            await self._apply_offer(event)
        elif isinstance(event, events.Candidate):
            await self._add_candidate(event)
        elif isinstance(event, events.UpdateEndpointMetadata):
            self._update_metadata(event.metadata)
        elif isinstance(event, events.UpdateTrackMetadata):
            self._update_track_metadata(event.track_id, event.metadata)
        else:
            # Encodings and variants: recorded by the real engine, no output.
            logger.debug(
                "room %s: endpoint %s: %s has no effect here",
                self.room_id,
                self.id,
                type(event).__name__,
            )

    def _connect(self, metadata: Any) -> None:
        if self.ready:
            logger.debug("room %s: second connect of %s ignored", self.room_id, self.id)
            return
        self.ready = True
        self.metadata = metadata
        others = [e for e in self.engine.ready_endpoints() if e is not self]
        self.send(
            "connected",
            {"id": self.id, "otherEndpoints": [e.description() for e in others]},
        )
        for other in others:
            other.send(
                "endpointAdded",
                {"id": self.id, "type": ENDPOINT_TYPE, "metadata": metadata},
            )
        logger.info("room %s: endpoint %s connected", self.room_id, self.id)
        available = [p.remote() for e in others for p in e.publications.values()]
        if available:
            self.emit(self.negotiation.tracks_available(available))

    def _update_metadata(self, metadata: Any) -> None:
        if metadata == self.metadata:
            return
        self.metadata = metadata
        for endpoint in self.engine.ready_endpoints():
            endpoint.send("endpointUpdated", {"id": self.id, "metadata": metadata})

    def _update_track_metadata(self, track_id: Any, metadata: Any) -> None:
        publication = (
            self.publications.get(track_id) if isinstance(track_id, str) else None
        )
        if publication is None or publication.metadata == metadata:
            return
        publication.metadata = metadata
        for endpoint in self.engine.endpoints.values():
            if track_id in endpoint.negotiation.outbound:
                endpoint.send(
                    "trackUpdated",
                    {"endpointId": self.id, "trackId": track_id, "metadata": metadata},
                )

    # -- offer and answer

    async def _apply_offer(self, event: events.SdpOffer) -> None:
        if event.sdp_type != "offer":
            logger.info(
                "room %s: endpoint %s sent an sdpOffer of type %s, ignored",
                self.room_id,
                self.id,
                event.sdp_type,
            )
            return
        offer = check_offer(event.sdp)
        for candidate in offer_candidates(event.sdp):
            self._check_foundation(candidate)
            self._record_candidate(candidate)
        mid_to_track_id = event.mid_to_track_id
        if not isinstance(mid_to_track_id, dict):
            raise EndpointCrash("midToTrackId is not an object")
        metadata = event.track_id_to_metadata
        if not isinstance(metadata, dict):
            metadata = {}

        pc = self.pc
        if pc is None:
            configuration = rtc_configuration(
                self.engine.settings.ice_servers, self.engine.policy
            )
            # Like ex_webrtc, one transport for every m-line. aiortc's default
            # (balanced) gives a first offer's later m-lines of a kind the
            # transport of that kind's first m-line, which BUNDLE then discards:
            # their senders never start.
            configuration.bundlePolicy = RTCBundlePolicy.MAX_BUNDLE
            pc = RTCPeerConnection(configuration)
            pc.on("connectionstatechange", self._connection_state_changed)
            self.pc = pc
        description = RTCSessionDescription(sdp=keep_codecs(offer), type="offer")
        restarted = bool(prepare_ice_restart(pc, description))
        await pc.setRemoteDescription(description)

        own_mids: dict[str, str] = {}
        for transceiver in pc.getTransceivers():
            if transceiver._offerDirection not in _CLIENT_SENDS:
                continue
            mid = transceiver.mid
            track_id = mid_to_track_id.get(mid)
            if not isinstance(track_id, str):
                raise EndpointCrash(
                    f"sending m-line {mid} has no track in midToTrackId"
                )
            own_mids[str(mid)] = track_id
        self._place_outbound(pc, set(own_mids))

        answer = await pc.createAnswer()
        await pc.setLocalDescription(answer)
        self.negotiation.offer_answered(own_mids)
        self.send_custom(
            "sdpAnswer",
            {
                "type": "answer",
                "sdp": trickle_answer(pc.localDescription.sdp),
                "midToTrackId": self.negotiation.mid_to_track_id(),
            },
        )
        self._answers += 1
        if self._answers == 1 or restarted:
            self._trickle_candidates(pc)

        for track_id in list(self.publications):
            if track_id not in own_mids.values():
                self.engine.unpublish(self, track_id)
        # The tracks of one offer reach the engine together: one tracksAdded
        # and one offerData for all of them at each other endpoint.
        new: list[Publication] = []
        for mid, track_id in own_mids.items():
            if track_id not in self.publications:
                publication = self._publish(pc, mid, track_id, metadata.get(track_id))
                if publication is not None:
                    new.append(publication)
        if new:
            self.engine.published(self, new)

        if pc.connectionState == "connected":
            self.emit(self.negotiation.negotiation_done())

    def _place_outbound(self, pc: RTCPeerConnection, own: set[str]) -> None:
        """Put each negotiating remote track on a new receive m-line of the offer."""
        used = own | {o.mid for o in self.negotiation.outbound.values() if o.mid}
        free = [
            t
            for t in pc.getTransceivers()
            if t._offerDirection == _CLIENT_RECEIVES_ONLY
            and t.currentDirection is None
            and t.mid not in used
        ]
        for outbound in self.negotiation.tracks_to_place():
            kind = outbound.track.kind
            transceiver = next((t for t in free if t.kind == kind), None)
            if transceiver is None:
                raise EndpointCrash(
                    f"no {kind} transceiver for outbound track "
                    f"{outbound.track.track_id}"
                )
            free.remove(transceiver)
            track_id = outbound.track.track_id
            track = EncodedTrack(kind)
            track.on_keyframe_request = self._keyframe_requester(track_id)
            transceiver.sender.replaceTrack(track)
            transceiver.direction = "sendonly"
            self.senders[track_id] = (transceiver, track)
            self.negotiation.placed(track_id, str(transceiver.mid))

    def _keyframe_requester(self, track_id: str) -> Callable[[], None]:
        def request() -> None:
            publication = self.engine.publication(track_id)
            if publication is not None:
                publication.request_keyframe()

        return request

    def _publish(
        self, pc: RTCPeerConnection, mid: str, track_id: str, metadata: Any
    ) -> Publication | None:
        transceiver = next(t for t in pc.getTransceivers() if t.mid == mid)
        if self.engine.publication(track_id) is not None:
            logger.warning(
                "room %s: endpoint %s reuses track id %s, ignored",
                self.room_id,
                self.id,
                track_id,
            )
            return None
        publication = Publication(track_id, self.id, transceiver.kind, metadata, mid)
        on_packet = None
        if publication.kind == "audio":
            publication.vad = VoiceActivityDetector()
            on_packet = self._audio_level_reader(publication, publication.vad)
        publication.tap = ReceiverTap(
            transceiver.receiver, publication.relay, on_packet=on_packet
        )
        self.publications[track_id] = publication
        return publication

    def _audio_level_reader(
        self, publication: Publication, detector: VoiceActivityDetector
    ) -> Callable[[Any], None]:
        def read(packet: Any) -> None:
            # A packet after the track was removed tells nobody anything.
            current = self.publications.get(publication.track_id)
            if self.closed or current is not publication:
                return
            # aiortc parses the extension into (voice flag, attenuation 0..127).
            level = packet.extensions.audio_level
            status = detector.update(
                packet.timestamp, None if level is None else -level[1]
            )
            if status is not None:
                self.engine.voice_activity_changed(self, publication.track_id, status)

        return read

    def _connection_state_changed(self) -> None:
        pc = self.pc
        if pc is None or self.closed:
            return
        state = pc.connectionState
        logger.debug("room %s: endpoint %s peer %s", self.room_id, self.id, state)
        if state == "connected":
            self.emit(self.negotiation.negotiation_done())
        elif state == "failed":
            self.engine.crash_endpoint(self.id, "peer_connection_failed")

    # -- ICE candidates

    async def _add_candidate(self, event: events.Candidate) -> None:
        pc = self.pc
        if pc is None or pc.remoteDescription is None:
            raise EndpointCrash("candidate before the first offer")
        candidate = event.candidate
        if not isinstance(candidate, str):
            logger.info(
                "room %s: %s sent a candidate that is no string", self.room_id, self.id
            )
            return
        if candidate == "":
            logger.debug("room %s: end of candidates from %s", self.room_id, self.id)
            return
        if not candidate.startswith("candidate:"):
            return
        self._check_foundation(candidate)
        self._record_candidate(candidate)
        if not self.engine.policy.accepts_remote_candidate(candidate):
            logger.info(
                "room %s: candidate of %s outside the ICE policy dropped: %s",
                self.room_id,
                self.id,
                candidate,
            )
            return
        try:
            parsed = candidate_from_sdp(candidate.removeprefix("candidate:"))
        except (ValueError, IndexError):
            logger.info(
                "room %s: unreadable candidate of %s ignored", self.room_id, self.id
            )
            return
        transceivers = pc.getTransceivers()
        if not transceivers:
            return
        # BUNDLE: every candidate belongs to the one transport.
        parsed.sdpMid = transceivers[0].mid
        parsed.sdpMLineIndex = 0
        await pc.addIceCandidate(parsed)

    def _check_foundation(self, candidate: str) -> None:
        if self.engine.settings.integer_foundations_only and not is_integer_foundation(
            candidate
        ):
            raise EndpointCrash(
                f"candidate foundation is not an integer (ex_ice 0.13): {candidate}"
            )

    def _record_candidate(self, candidate: str) -> None:
        self.received_candidates.append(candidate)
        self.engine.listener.on_candidate_received(self.id, candidate)

    def _trickle_candidates(self, pc: RTCPeerConnection) -> None:
        seen: set[int] = set()
        for transceiver in pc.getTransceivers():
            ice = transceiver.receiver.transport.transport
            if id(ice) in seen:
                continue
            seen.add(id(ice))
            for candidate in ice.iceGatherer.getLocalCandidates():
                candidate.foundation = integer_foundation(candidate.foundation)
                self.send_custom(
                    "candidate",
                    {
                        "candidate": "candidate:" + candidate_to_sdp(candidate),
                        "sdpMid": "0",
                        "sdpMLineIndex": 0,
                        "usernameFragment": None,
                    },
                )

    # -- negotiation outputs

    def emit(self, outputs: list[Output]) -> None:
        for output in outputs:
            if isinstance(output, TracksAdded):
                self.send(
                    "tracksAdded",
                    {
                        "endpointId": output.origin,
                        "trackIdToMetadata": {
                            t.track_id: t.metadata for t in output.tracks
                        },
                        "tracks": {
                            t.track_id: {
                                "metadata": t.metadata,
                                "simulcastConfig": dict(SIMULCAST_OFF),
                            }
                            for t in output.tracks
                        },
                    },
                )
            elif isinstance(output, OfferData):
                self.send_custom(
                    "offerData",
                    {"tracksTypes": output.tracks_types, "integratedTurnServers": []},
                )
            elif isinstance(output, TracksRemoved):
                self.send(
                    "tracksRemoved",
                    {"endpointId": output.origin, "trackIds": list(output.track_ids)},
                )
            elif isinstance(output, Subscribe):
                for track_id in output.track_ids:
                    self._subscribe(track_id)
            elif isinstance(output, Detach):
                for track_id, _mid in output.placements:
                    self._detach(track_id)

    def _subscribe(self, track_id: str) -> None:
        publication = self.engine.publication(track_id)
        sender = self.senders.get(track_id)
        if publication is None or sender is None:
            return
        transceiver, track = sender
        publication.subscribers[self.id] = Subscription(
            self.id, track, waiting_for_keyframe=publication.kind == "video"
        )
        if self.engine.on_subscribed is not None:
            self.engine.on_subscribed(track_id, transceiver.sender)
        publication.request_keyframe()
        self.negotiation.subscribed(track_id)
        logger.info(
            "room %s: endpoint %s subscribed to %s track %s",
            self.room_id,
            self.id,
            publication.kind,
            track_id,
        )

    def _detach(self, track_id: str) -> None:
        publication = self.engine.publication(track_id)
        if publication is not None:
            publication.subscribers.pop(self.id, None)
        sender = self.senders.pop(track_id, None)
        if sender is None:
            return
        transceiver, track = sender
        transceiver.sender.replaceTrack(None)
        track.stop()
        # Answered inactive at the client's next offer.
        transceiver.direction = "recvonly"

    # -- sending

    def send(self, kind: str, data: Any) -> None:
        if self.closed:
            return
        self.engine.listener.on_media_event(
            self.id, json.dumps({"type": kind, "data": data})
        )

    def send_custom(self, kind: str, data: Any) -> None:
        self.send("custom", {"type": kind, "data": data})

    # -- description and life

    def description(self) -> dict[str, Any]:
        """This endpoint as ``connected.otherEndpoints`` lists it."""
        return {
            "id": self.id,
            "type": ENDPOINT_TYPE,
            "metadata": self.metadata,
            "trackIdToMetadata": {
                t: p.metadata for t, p in self.publications.items() if p.frames
            },
            "tracks": {t: p.info() for t, p in self.publications.items() if p.frames},
        }

    def selected_pairs(self) -> list[tuple[str, str]]:
        """``(local, remote)`` ``host:port`` of every nominated candidate pair."""
        pairs: list[tuple[str, str]] = []
        if self.pc is None:
            return pairs
        seen: set[int] = set()
        for transceiver in self.pc.getTransceivers():
            connection = getattr(
                transceiver.receiver.transport.transport, "_connection", None
            )
            if connection is None or id(connection) in seen:
                continue
            seen.add(id(connection))
            for pair in getattr(connection, "_nominated", {}).values():
                local, remote = pair.local_candidate, pair.remote_candidate
                pairs.append(
                    (f"{local.host}:{local.port}", f"{remote.host}:{remote.port}")
                )
        return pairs

    def stats(self) -> dict[str, Any]:
        return {
            "endpoint_id": self.id,
            "ready": self.ready,
            "connection_state": self.pc.connectionState if self.pc else "new",
            "published": {
                track_id: {
                    "kind": p.kind,
                    "frames": p.frames,
                    "keyframes": p.keyframes,
                    "bytes": p.bytes,
                    "width": p.width,
                    "height": p.height,
                    "subscribers": sorted(p.subscribers),
                    "voice_activity": p.vad.status if p.vad is not None else None,
                }
                for track_id, p in self.publications.items()
            },
            "subscriptions": {
                track_id: {
                    "frames_sent": track.frames_sent,
                    "bytes_sent": track.bytes_sent,
                }
                for track_id, (_t, track) in self.senders.items()
            },
            "selected_pairs": self.selected_pairs(),
            "received_candidates": list(self.received_candidates),
        }

    def close(self) -> asyncio.Task[None] | None:
        """Stop handling events and close the peer connection (in the background)."""
        if self.closed:
            return None
        self.closed = True
        if self._task is not asyncio.current_task():
            self._task.cancel()
        for publication in self.publications.values():
            if publication.tap is not None:
                publication.tap.close()
        for _transceiver, track in self.senders.values():
            track.stop()
        pc, self.pc = self.pc, None
        if pc is None:
            return None
        return asyncio.get_running_loop().create_task(
            _close_peer(pc, self.id), name=f"close {self.id}"
        )


async def _close_peer(pc: RTCPeerConnection, endpoint_id: str) -> None:
    try:
        await asyncio.wait_for(pc.close(), 2.0)
    except TimeoutError:
        logger.warning("peer connection of %s did not close within 2 s", endpoint_id)
    except Exception:
        logger.exception("closing the peer connection of %s failed", endpoint_id)


class Engine:
    """The media plane of one call."""

    def __init__(
        self, room_id: str, settings: ServerSettings, listener: EngineListener
    ) -> None:
        self.room_id = room_id
        self.settings = settings
        self.listener = listener
        self.policy = IceAddressPolicy(settings.ice_addresses)
        install_ice_policy(self.policy)
        self.endpoints: dict[str, Endpoint] = {}
        self._closing: set[asyncio.Task[None]] = set()
        # Test control: told of each new subscriber's sender (network conditions).
        self.on_subscribed: Callable[[str, RTCRtpSender], None] | None = None

    # -- the CallServer's side

    def add_endpoint(self, endpoint_id: str) -> None:
        if endpoint_id in self.endpoints:
            raise ValueError(f"endpoint {endpoint_id} exists")
        self.endpoints[endpoint_id] = Endpoint(self, endpoint_id)
        logger.debug("room %s: endpoint %s added", self.room_id, endpoint_id)

    def remove_endpoint(self, endpoint_id: str, *, notify: bool = False) -> None:
        """Remove an endpoint; ``notify``: tell the listener (client disconnect)."""
        if self._drop(endpoint_id) and notify:
            self.listener.on_endpoint_removed(endpoint_id)

    def handle_media_event(self, endpoint_id: str, data: object) -> None:
        endpoint = self.endpoints.get(endpoint_id)
        if endpoint is None:
            logger.debug("room %s: media event for gone %s", self.room_id, endpoint_id)
            return
        try:
            event = events.decode(data)
        except EndpointCrash as exc:
            self.crash_endpoint(endpoint_id, exc.reason)
            return
        if event is not None:
            endpoint.enqueue(event)

    def crash_endpoint(self, endpoint_id: str, reason: str) -> None:
        if self._drop(endpoint_id):
            logger.warning(
                "room %s: endpoint %s crashed: %s", self.room_id, endpoint_id, reason
            )
            self.listener.on_endpoint_crashed(endpoint_id, reason)

    def endpoint_stats(self, endpoint_id: str) -> dict[str, Any]:
        endpoint = self.endpoints.get(endpoint_id)
        return endpoint.stats() if endpoint is not None else {}

    async def close(self) -> None:
        for endpoint_id in list(self.endpoints):
            self._drop(endpoint_id)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    # -- between endpoints

    def ready_endpoints(self) -> list[Endpoint]:
        return [e for e in self.endpoints.values() if e.ready]

    def publication(self, track_id: str) -> Publication | None:
        for endpoint in self.endpoints.values():
            publication = endpoint.publications.get(track_id)
            if publication is not None:
                return publication
        return None

    def published(self, origin: Endpoint, publications: list[Publication]) -> None:
        """New tracks of one offer: ``track_added`` each, one round for the rest."""
        for publication in publications:
            logger.info(
                "room %s: endpoint %s publishes %s track %s",
                self.room_id,
                origin.id,
                publication.kind,
                publication.track_id,
            )
            self.listener.on_track_added(
                origin.id,
                publication.track_id,
                publication.kind,
                ENCODINGS.get(publication.kind, publication.kind),
            )
        remote = [p.remote() for p in publications]
        for endpoint in self.ready_endpoints():
            if endpoint is not origin:
                endpoint.emit(endpoint.negotiation.tracks_available(remote))

    def unpublish(self, origin: Endpoint, track_id: str) -> None:
        publication = origin.publications.pop(track_id, None)
        if publication is None:
            return
        if publication.tap is not None:
            publication.tap.close()
        logger.info(
            "room %s: track %s of %s removed", self.room_id, track_id, origin.id
        )
        self.listener.on_track_removed(origin.id, track_id)
        for endpoint in self.endpoints.values():
            if endpoint is not origin:
                endpoint.emit(endpoint.negotiation.remote_tracks_removed([track_id]))

    def _drop(self, endpoint_id: str) -> bool:
        endpoint = self.endpoints.pop(endpoint_id, None)
        if endpoint is None:
            return False
        track_ids = list(endpoint.publications)
        for other in self.endpoints.values():
            for track_id in track_ids:
                publication = endpoint.publications[track_id]
                publication.subscribers.pop(other.id, None)
            if track_ids:
                other.emit(other.negotiation.remote_tracks_removed(track_ids))
            if endpoint.ready and other.ready:
                other.send("endpointRemoved", {"id": endpoint_id})
        for publication in self.publications_of_others(endpoint):
            publication.subscribers.pop(endpoint_id, None)
        task = endpoint.close()
        if task is not None:
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        logger.info("room %s: endpoint %s removed", self.room_id, endpoint_id)
        return True

    def voice_activity_changed(
        self, origin: Endpoint, track_id: str, status: VadStatus
    ) -> None:
        """``vadNotification`` to every other endpoint that receives the track."""
        # Known limit: sent to every endpoint with the track in its outbound set, also
        # before its subscription is linked; the real engine tells linked ones only.
        logger.debug(
            "room %s: track %s of %s: %s", self.room_id, track_id, origin.id, status
        )
        for endpoint in self.ready_endpoints():
            if endpoint is not origin and track_id in endpoint.negotiation.outbound:
                endpoint.send_custom(
                    "vadNotification", {"trackId": track_id, "status": status}
                )

    def publications_of_others(self, endpoint: Endpoint) -> list[Publication]:
        return [
            p
            for e in self.endpoints.values()
            if e is not endpoint
            for p in e.publications.values()
        ]
