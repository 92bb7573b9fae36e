"""Membrane media events as the bot speaks them, and their double encoding.

A media event travels in ``media_event {"data": <JSON string>}``. The string is
produced only by :func:`encode` from a typed client event, so the mistakes of
membrane-media-events.md §10 that concern the envelope (a non-string ``data``,
a candidate without ``sdpMid``/``sdpMLineIndex``, an ``sdpOffer`` that is not
``{type, sdp}``, bitrates that are not numbers) cannot be written.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from callbot.errors import MediaEventError
from callbot.logtext import validation_summary

# ---------------------------------------------------------------- client → server


class Connect(BaseModel):
    """``connect``: the endpoint becomes ready with this metadata."""

    metadata: dict[str, Any] = Field(default_factory=dict)

    def document(self) -> dict[str, Any]:
        return {"type": "connect", "data": {"metadata": self.metadata}}


class Disconnect(BaseModel):
    """``disconnect``: the endpoint removes itself."""

    def document(self) -> dict[str, Any]:
        return {"type": "disconnect"}


class RenegotiateTracks(BaseModel):
    """Custom ``renegotiateTracks``: ask the server for an ``offerData``."""

    def document(self) -> dict[str, Any]:
        return {"type": "custom", "data": {"type": "renegotiateTracks"}}


class SdpOffer(BaseModel):
    """Custom ``sdpOffer``; ``mid_to_track_id`` lists only own sending mids."""

    sdp: str
    track_id_to_metadata: dict[str, dict[str, Any]]
    track_id_to_bitrate: dict[str, int]
    mid_to_track_id: dict[str, str]

    def document(self) -> dict[str, Any]:
        return {
            "type": "custom",
            "data": {
                "type": "sdpOffer",
                "data": {
                    "sdpOffer": {"type": "offer", "sdp": self.sdp},
                    "trackIdToTrackMetadata": self.track_id_to_metadata,
                    "trackIdToTrackBitrates": self.track_id_to_bitrate,
                    "midToTrackId": self.mid_to_track_id,
                },
            },
        }


class LocalCandidate(BaseModel):
    """Custom ``candidate`` sent by the bot; both index keys are always present."""

    candidate: str
    sdp_mid: str
    sdp_mline_index: int

    def document(self) -> dict[str, Any]:
        return {
            "type": "custom",
            "data": {
                "type": "candidate",
                "data": {
                    "candidate": self.candidate,
                    "sdpMLineIndex": self.sdp_mline_index,
                    "sdpMid": self.sdp_mid,
                },
            },
        }


ClientMediaEvent = Connect | Disconnect | RenegotiateTracks | SdpOffer | LocalCandidate


def encode(event: ClientMediaEvent) -> str:
    """The ``data`` string of a ``media_event`` push for ``event``."""
    return json.dumps(event.document(), separators=(",", ":"))


# ---------------------------------------------------------------- server → client


class _Wire(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")


class TrackInfo(_Wire):
    metadata: Any = None
    simulcast_config: dict[str, Any] | None = Field(None, alias="simulcastConfig")


class EndpointInfo(_Wire):
    id: str
    type: str | None = None
    metadata: Any = None
    track_id_to_metadata: dict[str, Any] = Field(
        default_factory=dict, alias="trackIdToMetadata"
    )
    tracks: dict[str, TrackInfo] = Field(default_factory=dict)


class Connected(_Wire):
    kind: Literal["connected"] = "connected"
    id: str
    other_endpoints: list[EndpointInfo] = Field(
        default_factory=list, alias="otherEndpoints"
    )


class EndpointAdded(_Wire):
    kind: Literal["endpointAdded"] = "endpointAdded"
    id: str
    type: str | None = None
    metadata: Any = None


class EndpointRemoved(_Wire):
    kind: Literal["endpointRemoved"] = "endpointRemoved"
    id: str


class EndpointUpdated(_Wire):
    kind: Literal["endpointUpdated"] = "endpointUpdated"
    id: str
    metadata: Any = None


class TracksAdded(_Wire):
    kind: Literal["tracksAdded"] = "tracksAdded"
    endpoint_id: str = Field(alias="endpointId")
    track_id_to_metadata: dict[str, Any] = Field(
        default_factory=dict, alias="trackIdToMetadata"
    )
    tracks: dict[str, TrackInfo] = Field(default_factory=dict)

    def track_ids(self) -> list[str]:
        """Every announced track id, from both the new and the legacy field."""
        ids = list(self.tracks)
        ids.extend(t for t in self.track_id_to_metadata if t not in self.tracks)
        return ids


class TracksRemoved(_Wire):
    kind: Literal["tracksRemoved"] = "tracksRemoved"
    endpoint_id: str = Field(alias="endpointId")
    track_ids: list[str] = Field(alias="trackIds")


class TrackUpdated(_Wire):
    kind: Literal["trackUpdated"] = "trackUpdated"
    endpoint_id: str = Field(alias="endpointId")
    track_id: str = Field(alias="trackId")
    metadata: Any = None


class OfferData(_Wire):
    kind: Literal["offerData"] = "offerData"
    tracks_types: dict[str, int] = Field(alias="tracksTypes")
    integrated_turn_servers: list[Any] = Field(
        default_factory=list, alias="integratedTurnServers"
    )


class SdpAnswer(_Wire):
    kind: Literal["sdpAnswer"] = "sdpAnswer"
    type: Literal["answer"]
    sdp: str
    mid_to_track_id: dict[str, str] = Field(default_factory=dict, alias="midToTrackId")


class RemoteCandidate(_Wire):
    kind: Literal["candidate"] = "candidate"
    candidate: str
    sdp_mid: str | None = Field(None, alias="sdpMid")
    sdp_mline_index: int | None = Field(None, alias="sdpMLineIndex")
    username_fragment: str | None = Field(None, alias="usernameFragment")


class VadNotification(_Wire):
    kind: Literal["vadNotification"] = "vadNotification"
    track_id: str = Field(alias="trackId")
    status: str


class UnknownMediaEvent(_Wire):
    """A decodable media event the bot has no use for (logged, then ignored)."""

    kind: Literal["unknown"] = "unknown"
    type: str
    data: Any = None


ServerMediaEvent = (
    Connected
    | EndpointAdded
    | EndpointRemoved
    | EndpointUpdated
    | TracksAdded
    | TracksRemoved
    | TrackUpdated
    | OfferData
    | SdpAnswer
    | RemoteCandidate
    | VadNotification
    | UnknownMediaEvent
)

_PLAIN: dict[str, type[_Wire]] = {
    "connected": Connected,
    "endpointAdded": EndpointAdded,
    "endpointRemoved": EndpointRemoved,
    "endpointUpdated": EndpointUpdated,
    "tracksAdded": TracksAdded,
    "tracksRemoved": TracksRemoved,
    "trackUpdated": TrackUpdated,
}
_CUSTOM: dict[str, type[_Wire]] = {
    "offerData": OfferData,
    "sdpAnswer": SdpAnswer,
    "candidate": RemoteCandidate,
    "vadNotification": VadNotification,
}


def decode(data: object) -> ServerMediaEvent:
    """Parse the ``data`` of a ``media_event`` push from the server.

    Raises:
        MediaEventError: ``data`` is not a JSON string of a media event
            document, or a known event misses a required key.
    """
    if not isinstance(data, str):
        raise MediaEventError(f"media event data is not a string: {data!r:.80}")
    try:
        document = json.loads(data)
    except json.JSONDecodeError as exc:
        raise MediaEventError(f"media event is not JSON: {exc.msg}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("type"), str):
        raise MediaEventError(f"media event has no type: {data:.80}")

    kind: str = document["type"]
    body = document.get("data")
    table = _PLAIN
    if kind == "custom":
        if not isinstance(body, dict) or not isinstance(body.get("type"), str):
            raise MediaEventError(f"custom media event has no type: {data:.80}")
        kind = body["type"]
        body = body.get("data")
        table = _CUSTOM

    model = table.get(kind)
    if model is None:
        return UnknownMediaEvent(type=kind, data=body)
    if not isinstance(body, dict):
        raise MediaEventError(f"media event {kind} has no data object")
    try:
        event = model.model_validate(body)
    except ValidationError as exc:
        raise MediaEventError(
            f"media event {kind} is malformed: {validation_summary(exc)}"
        ) from exc
    return event  # type: ignore[return-value]
