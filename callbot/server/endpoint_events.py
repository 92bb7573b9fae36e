"""Media events as the ExWebRTC endpoint decodes them (membrane-media-events.md).

:func:`decode` takes the raw ``payload["data"]`` of a ``media_event``. It
returns a typed event, returns ``None`` for what the real endpoint logs as
"Invalid media event" or drops as unexpected, and raises
:class:`EndpointCrash` for the inputs that kill the real endpoint (§10).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

RIDS = ("l", "m", "h")
SDP_TYPES = ("offer", "answer", "pranswer", "rollback")


class EndpointCrash(Exception):
    """The input kills the endpoint, as in the real server."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Connect:
    metadata: Any


@dataclass(frozen=True)
class Disconnect:
    pass


@dataclass(frozen=True)
class UpdateEndpointMetadata:
    metadata: Any


@dataclass(frozen=True)
class UpdateTrackMetadata:
    track_id: Any
    metadata: Any


@dataclass(frozen=True)
class TrackEncoding:
    """``enableTrackEncoding`` / ``disableTrackEncoding``: recorded, no output."""

    track_id: Any
    encoding: str
    enabled: bool


@dataclass(frozen=True)
class UnmuteTrack:
    track_id: Any


@dataclass(frozen=True)
class RenegotiateTracks:
    pass


@dataclass(frozen=True)
class SdpOffer:
    sdp: str
    sdp_type: str
    track_id_to_metadata: Any
    mid_to_track_id: Any
    track_id_to_bitrates: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Candidate:
    candidate: Any
    sdp_mid: Any
    sdp_mline_index: Any
    username_fragment: Any = None


@dataclass(frozen=True)
class SetTargetTrackVariant:
    track_id: Any
    variant: str | None


Event = (
    Connect
    | Disconnect
    | UpdateEndpointMetadata
    | UpdateTrackMetadata
    | TrackEncoding
    | UnmuteTrack
    | RenegotiateTracks
    | SdpOffer
    | Candidate
    | SetTargetTrackVariant
)

# Accepted by the decoder and then dropped by the endpoint, with their keys.
_DROPPED_CUSTOM = {
    "trackVariantBitrates": ("trackId", "variantBitrates"),
    "prioritizeTrack": ("trackId",),
    "unprioritizeTrack": ("trackId",),
    "preferedVideoSizes": (
        "bigScreens",
        "mediumScreens",
        "smallScreens",
        "allSameSize",
    ),
}


class _Invalid(Exception):
    """An "Invalid media event": logged and ignored."""


def _keys(data: Any, *names: str) -> list[Any]:
    if not isinstance(data, dict):
        raise _Invalid("data is not an object")
    missing = [name for name in names if name not in data]
    if missing:
        raise _Invalid(f"missing {', '.join(missing)}")
    return [data[name] for name in names]


def _rid(value: Any, *, allow_null: bool = False) -> str | None:
    if value is None and allow_null:
        return None
    if value not in RIDS:
        raise EndpointCrash(f"invalid rid {value!r}")
    return str(value)


def decode(data: object) -> Event | None:
    """Decode one media event; ``None`` means ignored (already logged)."""
    if not isinstance(data, str):
        raise EndpointCrash("media event data is not a string")
    try:
        document = json.loads(data)
    except ValueError:
        logger.warning("Invalid media event (not JSON): %.200s", data)
        return None
    try:
        return _decode_document(document)
    except _Invalid as exc:
        logger.warning("Invalid media event (%s): %.200s", exc, data)
        return None


def _decode_document(document: Any) -> Event | None:
    (kind,) = _keys(document, "type")
    payload = document.get("data")
    if kind == "connect":
        (metadata,) = _keys(payload, "metadata")
        return Connect(metadata)
    if kind == "disconnect":
        return Disconnect()
    if kind == "updateEndpointMetadata":
        (metadata,) = _keys(payload, "metadata")
        return UpdateEndpointMetadata(metadata)
    if kind == "updateTrackMetadata":
        track_id, metadata = _keys(payload, "trackId", "trackMetadata")
        return UpdateTrackMetadata(track_id, metadata)
    if kind in ("disableTrackEncoding", "enableTrackEncoding"):
        track_id, encoding = _keys(payload, "trackId", "encoding")
        rid = _rid(encoding)
        assert rid is not None
        return TrackEncoding(track_id, rid, kind == "enableTrackEncoding")
    if kind == "muteTrack":
        _keys(payload, "trackId")
        logger.debug("Unexpected media event muteTrack dropped")
        return None
    if kind == "unmuteTrack":
        (track_id,) = _keys(payload, "trackId")
        return UnmuteTrack(track_id)
    if kind == "custom":
        return _decode_custom(payload)
    raise _Invalid(f"unknown type {kind!r}")


def _decode_custom(payload: Any) -> Event | None:
    (kind,) = _keys(payload, "type")
    data = payload.get("data")
    if kind == "renegotiateTracks":
        return RenegotiateTracks()
    if kind == "sdpOffer":
        return _decode_offer(data)
    if kind == "candidate":
        return _decode_candidate(data)
    if kind == "setTargetTrackVariant":
        track_id, variant = _keys(data, "trackId", "variant")
        return SetTargetTrackVariant(track_id, _rid(variant, allow_null=True))
    if kind in _DROPPED_CUSTOM:
        _keys(data, *_DROPPED_CUSTOM[kind])
        logger.debug("Unexpected media event %s dropped", kind)
        return None
    raise _Invalid(f"unknown custom type {kind!r}")


def _decode_offer(data: Any) -> SdpOffer:
    offer, metadata, mids = _keys(
        data, "sdpOffer", "trackIdToTrackMetadata", "midToTrackId"
    )
    if (
        not isinstance(offer, dict)
        or "type" not in offer
        or "sdp" not in offer
        or offer["type"] not in SDP_TYPES
        or not isinstance(offer["sdp"], str)
    ):
        raise EndpointCrash("sdpOffer is not {type, sdp} with a valid type")
    bitrates = data.get("trackIdToTrackBitrates", {})
    if not isinstance(bitrates, dict):
        raise EndpointCrash("trackIdToTrackBitrates is not an object")
    for value in bitrates.values():
        if isinstance(value, bool) or not isinstance(value, int | float | dict):
            raise EndpointCrash(f"track bitrate {value!r} is not a number or object")
    return SdpOffer(offer["sdp"], offer["type"], metadata, mids, bitrates)


def _decode_candidate(data: Any) -> Candidate:
    if not isinstance(data, dict):
        raise EndpointCrash("candidate data is not an object")
    # ex_webrtc fetches these two with a must-exist lookup.
    for key in ("sdpMid", "sdpMLineIndex"):
        if key not in data:
            raise EndpointCrash(f"candidate without {key}")
    (candidate,) = _keys(data, "candidate")
    return Candidate(
        candidate, data["sdpMid"], data["sdpMLineIndex"], data.get("usernameFragment")
    )
