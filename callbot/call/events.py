"""Server pushes on ``call:{room_id}`` (call-channel.md §4), one model each."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from callbot.errors import CallbotError
from callbot.logtext import validation_summary


class PushError(CallbotError):
    """A push of a known event has a payload the bot cannot read."""


class _Push(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class ParticipantJoined(_Push):
    event: Literal["participant_joined"] = "participant_joined"
    user_id: str
    endpoint_id: str
    user_info: dict[str, Any] = {}
    joined_at: str | None = None
    audio_enabled: Any = True
    video_enabled: Any = True


class ParticipantLeft(_Push):
    event: Literal["participant_left"] = "participant_left"
    user_id: str
    crashed: bool = False


class TrackAdded(_Push):
    event: Literal["track_added"] = "track_added"
    track_id: str
    endpoint_id: str
    type: str
    encoding: str | None = None


class TrackRemoved(_Push):
    event: Literal["track_removed"] = "track_removed"
    track_id: str


class QualityChanged(_Push):
    event: Literal["quality_changed"] = "quality_changed"
    quality: str


class TierChanged(_Push):
    event: Literal["tier_changed"] = "tier_changed"
    user_id: str
    tier: str


class AdaptiveQualityChanged(_Push):
    event: Literal["adaptive_quality_changed"] = "adaptive_quality_changed"
    enabled: bool


class CallEnded(_Push):
    event: Literal["call_ended"] = "call_ended"


class MediaEvent(_Push):
    event: Literal["media_event"] = "media_event"
    # Kept as sent: only a string is a valid media event (checked where decoded).
    data: Any


class ParticipantAudioChanged(_Push):
    event: Literal["participant_audio_changed"] = "participant_audio_changed"
    user_id: str
    audio_enabled: Any


class ParticipantVideoChanged(_Push):
    event: Literal["participant_video_changed"] = "participant_video_changed"
    user_id: str
    video_enabled: Any


class ParticipantSpeaking(_Push):
    event: Literal["participant_speaking"] = "participant_speaking"
    user_id: str
    speaking: bool


class VideoSnapshot(_Push):
    event: Literal["video_snapshot"] = "video_snapshot"
    user_id: str
    data: Any = None
    width: Any = None
    height: Any = None
    timestamp: Any = None


class QualityTierRequest(_Push):
    event: Literal["quality_tier_request"] = "quality_tier_request"
    from_user_id: str
    target_user_id: str
    tier: str


CallEvent = (
    ParticipantJoined
    | ParticipantLeft
    | TrackAdded
    | TrackRemoved
    | QualityChanged
    | TierChanged
    | AdaptiveQualityChanged
    | CallEnded
    | MediaEvent
    | ParticipantAudioChanged
    | ParticipantVideoChanged
    | ParticipantSpeaking
    | VideoSnapshot
    | QualityTierRequest
)

PUSHES: dict[str, type[_Push]] = {
    model.model_fields["event"].default: model
    for model in (
        ParticipantJoined,
        ParticipantLeft,
        TrackAdded,
        TrackRemoved,
        QualityChanged,
        TierChanged,
        AdaptiveQualityChanged,
        CallEnded,
        MediaEvent,
        ParticipantAudioChanged,
        ParticipantVideoChanged,
        ParticipantSpeaking,
        VideoSnapshot,
        QualityTierRequest,
    )
}

# Pushes the real server delivers once per channel; all others come twice.
SINGLE_DELIVERY = frozenset({"media_event", "quality_tier_request"})


def parse_push(event: str, payload: object) -> CallEvent | None:
    """The typed push for ``(event, payload)``; None for an event the bot does not know.

    Raises:
        PushError: a known event with a payload that does not match.
    """
    model = PUSHES.get(event)
    if model is None:
        return None
    if not isinstance(payload, dict):
        raise PushError(f"{event} payload is not an object: {payload!r:.80}")
    try:
        parsed = model.model_validate({**payload, "event": event})
    except ValidationError as exc:
        raise PushError(
            f"{event} payload is malformed: {validation_summary(exc)}"
        ) from exc
    return parsed  # type: ignore[return-value]
