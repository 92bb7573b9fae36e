import pytest

from callbot.call import events as ev


def test_every_push_of_the_call_channel_has_a_model() -> None:
    assert set(ev.PUSHES) == {
        "participant_joined",
        "participant_left",
        "track_added",
        "track_removed",
        "quality_changed",
        "tier_changed",
        "adaptive_quality_changed",
        "call_ended",
        "media_event",
        "participant_audio_changed",
        "participant_video_changed",
        "participant_speaking",
        "video_snapshot",
        "quality_tier_request",
    }


def test_participant_joined_as_the_server_sends_it() -> None:
    payload = {
        "user_id": "u-42",
        "endpoint_id": "u-42_5763",
        "user_info": {"name": "Bot 42"},
        "joined_at": "2026-03-02T10:15:30.123456Z",
        "audio_enabled": True,
        "video_enabled": True,
    }

    event = ev.parse_push("participant_joined", payload)

    assert isinstance(event, ev.ParticipantJoined)
    assert event.endpoint_id == "u-42_5763"
    assert event.user_info == {"name": "Bot 42"}


def test_participant_left_crashed_and_plain() -> None:
    crashed = ev.parse_push("participant_left", {"user_id": "u-7", "crashed": True})
    plain = ev.parse_push("participant_left", {"user_id": "u-7"})

    assert isinstance(crashed, ev.ParticipantLeft) and crashed.crashed
    assert isinstance(plain, ev.ParticipantLeft) and not plain.crashed


@pytest.mark.parametrize(
    ("event", "payload", "model", "field", "value"),
    [
        (
            "track_added",
            {
                "track_id": "a:1",
                "endpoint_id": "a_1",
                "type": "video",
                "encoding": "VP8",
            },
            ev.TrackAdded,
            "encoding",
            "VP8",
        ),
        ("track_removed", {"track_id": "a:1"}, ev.TrackRemoved, "track_id", "a:1"),
        ("quality_changed", {"quality": "high"}, ev.QualityChanged, "quality", "high"),
        (
            "tier_changed",
            {"user_id": "u-7", "tier": "active"},
            ev.TierChanged,
            "tier",
            "active",
        ),
        (
            "adaptive_quality_changed",
            {"enabled": False},
            ev.AdaptiveQualityChanged,
            "enabled",
            False,
        ),
        ("call_ended", {}, ev.CallEnded, "event", "call_ended"),
        ("media_event", {"data": "{}"}, ev.MediaEvent, "data", "{}"),
        (
            "participant_audio_changed",
            {"user_id": "u", "audio_enabled": "yes"},
            ev.ParticipantAudioChanged,
            "audio_enabled",
            "yes",
        ),
        (
            "participant_video_changed",
            {"user_id": "u", "video_enabled": False},
            ev.ParticipantVideoChanged,
            "video_enabled",
            False,
        ),
        (
            "participant_speaking",
            {"user_id": "u", "speaking": True},
            ev.ParticipantSpeaking,
            "speaking",
            True,
        ),
        (
            "video_snapshot",
            {
                "user_id": "u",
                "data": "/9j/",
                "width": 320,
                "height": 240,
                "timestamp": 1772446530123,
            },
            ev.VideoSnapshot,
            "timestamp",
            1772446530123,
        ),
        (
            "quality_tier_request",
            {"from_user_id": "a", "target_user_id": "b", "tier": "active"},
            ev.QualityTierRequest,
            "target_user_id",
            "b",
        ),
    ],
)
def test_each_push_parses_to_its_model(
    event: str, payload: dict[str, object], model: type, field: str, value: object
) -> None:
    parsed = ev.parse_push(event, payload)

    assert isinstance(parsed, model)
    assert getattr(parsed, field) == value


def test_unknown_event_is_none_and_bad_payload_raises_push_error() -> None:
    assert ev.parse_push("something_new", {"x": 1}) is None
    with pytest.raises(ev.PushError):
        ev.parse_push("participant_left", {})
    with pytest.raises(ev.PushError):
        ev.parse_push("tier_changed", ["not", "an", "object"])
