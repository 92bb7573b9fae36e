import logging

import pytest

from callbot.bot.plugin import PluginContext, RemoteTrack, RemoteTrackInfo
from plugins.echo import Echo, EchoConfig, EchoTrack, Retimer
from tests.media.encoded_media import vp8_frames


def _echo(**config: object) -> Echo:
    context = PluginContext("b", "lobby", "echo", logging.getLogger("test"))
    return Echo(EchoConfig.model_validate(config), context)


def _track(
    track_id: str, user_id: str, kind: str = "video"
) -> tuple[RemoteTrack, list[str]]:
    requests: list[str] = []
    info = RemoteTrackInfo(track_id, kind, f"{user_id}_1", user_id)
    return RemoteTrack(
        info, request_keyframe=lambda: requests.append(track_id)
    ), requests


def test_retimer_continues_across_a_source_switch() -> None:
    retimer = Retimer(3000)
    assert [retimer.timestamp("a", t) for t in (5000, 8000, 11000)] == [0, 3000, 6000]
    assert retimer.timestamp("b", 4_000_000_000) == 9000
    assert retimer.timestamp("b", 4_000_003_000) == 12000


async def test_echo_sends_the_followed_track_from_its_first_keyframe() -> None:
    echo = _echo(kinds=["video"])
    assert echo.source("audio") is None
    output = echo.source("video")
    assert isinstance(output, EchoTrack)

    track, requests = _track("v1", "alice")
    echo.on_track_added(track)
    other, _ = _track("v2", "bob")
    echo.on_track_added(other)  # one followed track per kind
    assert requests == ["v1"]

    frames = list(vp8_frames(40))
    for frame in frames[1:]:  # joins after the keyframe: waits for the next one
        track.deliver_encoded(frame)
    for frame in frames[:5]:
        other.deliver_encoded(frame)  # not followed
    assert output.frames_pushed == 10

    packets = [await output.recv() for _ in range(10)]
    assert [bytes(p) for p in packets] == [f.data for f in frames[30:]]
    assert [p.pts for p in packets] == [i * 3000 for i in range(10)]

    # a subscriber's keyframe request reaches the publisher
    assert output.on_keyframe_request is not None
    output.on_keyframe_request()
    assert requests == ["v1", "v1"]

    # the followed track ends: the next one added is followed, timestamps go on
    echo.on_track_ended(track.info)
    third, _ = _track("v3", "carol")
    echo.on_track_added(third)
    for frame in frames[:2]:
        third.deliver_encoded(frame)
    more = [await output.recv() for _ in range(2)]
    assert [p.pts for p in more] == [30000, 33000]
    output.stop()


def test_echo_follows_only_the_configured_user() -> None:
    echo = _echo(user_id="bob")
    track, _ = _track("v1", "alice")
    echo.on_track_added(track)
    assert echo.following == {}
    bobs, _ = _track("a1", "bob", "audio")
    echo.on_track_added(bobs)
    assert echo.following["audio"] is bobs


def test_echo_config_refuses_unknown_kinds() -> None:
    with pytest.raises(ValueError, match="kinds"):
        EchoConfig.model_validate({"kinds": ["screen"]})
