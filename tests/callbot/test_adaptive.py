"""A bot's adaptive behaviour against a recording session: what it sends, when."""

from __future__ import annotations

import asyncio
from typing import Any

import av
import numpy as np
import pytest
from aiortc import MediaStreamTrack

from callbot.bot import adaptive
from callbot.bot.adaptive import CallAdaptation
from callbot.bot.config import BotConfig
from callbot.call import events as ev
from callbot.errors import ChannelError
from tests.callbot.speech_signals import read_wav, tone


class RecordingSession:
    """The commands a CallSession would push, recorded."""

    def __init__(self, allow_requests: bool = False) -> None:
        self.in_call = True
        self.allow = allow_requests
        self.pushes: list[tuple[str, Any]] = []

    def speaking_state(self, speaking: bool) -> None:
        self.pushes.append(("speaking_state", {"speaking": speaking}))

    def attention_state(self, level: str) -> None:
        self.pushes.append(("attention_state", {"level": level}))

    def video_snapshot(self, data: str, width: int, height: int, ts: int) -> None:
        self.pushes.append(("video_snapshot", (width, height, ts)))

    async def request_quality_tier(self, target: str, tier: str) -> None:
        if not self.allow:
            raise ChannelError("disabled")
        self.pushes.append(("request_quality_tier", (target, tier)))

    def sent(self, event: str) -> list[Any]:
        return [p for e, p in self.pushes if e == event]


def make(**more: Any) -> tuple[CallAdaptation, RecordingSession, list[dict[str, Any]]]:
    config = BotConfig(server_url="ws://127.0.0.1:9/socket", room_id="r", **more)
    reports: list[dict[str, Any]] = []
    adaptation = CallAdaptation(config, "me", report=reports.append)
    session = RecordingSession(config.allow_quality_tier_requests)
    adaptation.joined(session)  # type: ignore[arg-type]
    return adaptation, session, reports


def audio_frames(samples: np.ndarray, rate: int) -> list[av.AudioFrame]:
    frames = []
    step = rate // 50
    for i in range(0, len(samples) - step + 1, step):
        frame = av.AudioFrame.from_ndarray(
            samples[i : i + step].reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = rate
        frames.append(frame)
    return frames


class Silent(MediaStreamTrack):
    kind = "audio"

    async def recv(self) -> av.AudioFrame:
        raise AssertionError("frames are pushed to the listener directly")


async def test_speech_sends_speaking_state_true_then_false_only_on_change() -> None:
    adaptation, session, _ = make()
    track = adaptation.audio_track(Silent())
    assert track.listener is not None
    speech, rate = read_wav("speech-en-us-16k.wav")
    signal = np.concatenate([speech, np.zeros(rate, dtype=np.int16)])
    for frame in audio_frames(signal, rate):
        track.listener(frame)
    assert session.sent("speaking_state") == [{"speaking": True}, {"speaking": False}]
    assert all(type(p["speaking"]) is bool for p in session.sent("speaking_state"))


async def test_the_default_tone_sends_no_speaking_state() -> None:
    adaptation, session, _ = make()
    track = adaptation.audio_track(Silent())
    assert track.listener is not None
    for frame in audio_frames(tone(440, -14, 5.0, 48000), 48000):
        track.listener(frame)
    assert session.sent("speaking_state") == []


def test_attention_is_sent_at_once_and_again_on_a_new_endpoint() -> None:
    adaptation, session, _ = make()
    assert session.sent("attention_state") == []  # high: the server's default
    adaptation.set_attention("low")
    assert session.sent("attention_state") == [{"level": "low"}]
    with pytest.raises(ValueError):
        adaptation.set_attention("asleep")

    rejoined = RecordingSession()
    adaptation.ended()
    adaptation.joined(rejoined)  # type: ignore[arg-type]
    assert rejoined.sent("attention_state") == [{"level": "low"}]


def test_configured_attention_is_sent_on_join() -> None:
    _, session, _ = make(attention="medium")
    assert session.sent("attention_state") == [{"level": "medium"}]


def test_own_tier_changes_apply_others_do_not() -> None:
    adaptation, _, reports = make()
    adaptation.on_event(ev.TierChanged(user_id="other", tier="active"))
    assert adaptation.video_settings.tier == "viewer"
    adaptation.on_event(ev.TierChanged(user_id="me", tier="recent"))
    assert (adaptation.video_settings.fps, adaptation.video_settings.max_bitrate) == (
        15,
        500_000,
    )
    assert not adaptation.schedule.enabled
    applied = [r for r in reports if r.get("event") == "video_settings"]
    assert [r["tier"] for r in applied] == ["viewer", "recent"]


def test_quality_tier_request_for_this_bot_applies_even_unchanged() -> None:
    adaptation, _, reports = make()
    adaptation.on_event(
        ev.QualityTierRequest(from_user_id="x", target_user_id="y", tier="active")
    )
    assert adaptation.video_settings.tier == "viewer"
    adaptation.schedule.due(0.0)
    before = len(reports)
    adaptation.on_event(
        ev.QualityTierRequest(from_user_id="x", target_user_id="me", tier="viewer")
    )
    assert len(reports) == before + 1  # re-applied, snapshots restarted
    assert adaptation.schedule.enabled


def test_tier_survives_a_new_endpoint() -> None:
    adaptation, _, _ = make()
    adaptation.on_event(
        ev.QualityTierRequest(from_user_id="x", target_user_id="me", tier="active")
    )
    adaptation.ended()
    adaptation.joined(RecordingSession())  # type: ignore[arg-type]
    assert adaptation.video_settings.tier == "active"
    assert not adaptation.schedule.enabled


def test_quality_changed_and_adaptive_off() -> None:
    adaptation, _, _ = make()
    adaptation.on_event(ev.QualityChanged(quality="minimal"))
    settings = adaptation.video_settings
    assert (settings.width, settings.height, settings.fps) == (320, 240, 5)
    adaptation.on_event(ev.AdaptiveQualityChanged(enabled=False))
    assert adaptation.video_settings.tier == "active"
    assert adaptation.video_settings.fps == 15  # the minimal ceiling


def test_snapshots_received_are_counted_per_participant() -> None:
    adaptation, _, _ = make()
    for user_id in ("a", "a", "b"):
        adaptation.on_event(ev.VideoSnapshot(user_id=user_id, data="x"))
    assert adaptation.snapshots_received == {"a": 2, "b": 1}


async def test_request_quality_tier_needs_the_setting() -> None:
    adaptation, session, _ = make()
    with pytest.raises(ChannelError):
        await adaptation.request_quality_tier("other", "active")
    allowed, session, _ = make(allow_quality_tier_requests=True)
    await allowed.request_quality_tier("other", "active")
    assert session.sent("request_quality_tier") == [("other", "active")]


class StillVideo(MediaStreamTrack):
    kind = "video"

    async def recv(self) -> av.VideoFrame:
        raise AssertionError("the latest frame is set directly")


async def test_viewer_sends_snapshots_of_the_latest_frame(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(adaptive, "SNAPSHOT_POLL", 0.001)
    now = [100.0]
    config = BotConfig(server_url="ws://127.0.0.1:9/socket", room_id="r")
    adaptation = CallAdaptation(
        config, "me", clock=lambda: now[0], wall_clock=lambda: 1772446530.123
    )
    session = RecordingSession()
    adaptation.joined(session)  # type: ignore[arg-type]
    video = adaptation.video_track(StillVideo())
    loop = asyncio.create_task(adaptation.run_snapshots())
    try:
        await asyncio.sleep(0.05)
        assert session.sent("video_snapshot") == []  # no frame yet

        red = np.zeros((480, 640, 3), dtype=np.uint8)
        red[..., 0] = 255
        video.latest = av.VideoFrame.from_ndarray(red, format="rgb24")
        for step in range(1, 4):
            await asyncio.sleep(0.05)
            assert len(session.sent("video_snapshot")) == step
            now[0] += 1.0
        assert session.sent("video_snapshot")[0] == (320, 240, 1772446530123)

        adaptation.on_event(ev.TierChanged(user_id="me", tier="active"))
        now[0] += 5.0
        await asyncio.sleep(0.05)
        assert len(session.sent("video_snapshot")) == 3
        assert adaptation.snapshots_sent == 3
    finally:
        loop.cancel()
