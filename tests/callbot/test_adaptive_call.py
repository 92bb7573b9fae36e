"""Bots in an adaptive call on the reference server: speech, tiers, snapshots.

Bots run in this process so that the test can read what each one knows;
the server's tier tick runs on a ManualClock.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
import wave
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest
from aiortc import MediaStreamTrack

from callbot.bot.bot import Bot
from callbot.bot.config import BotConfig
from callbot.server.app import ReferenceServer
from callbot.server.clock import ManualClock
from callbot.server.settings import ServerSettings
from tests.callbot.speech_signals import (
    SPEECH_FILES,
    read_wav,
    speech_end,
    speech_start,
)

pytestmark = pytest.mark.integration

ROOM = "lobby"
# Small pictures keep three bots and the server within two shared cores.
WIDTH, HEIGHT = 320, 240


@dataclass
class Running:
    bot: Bot
    task: asyncio.Task[None]
    reports: list[tuple[float, dict[str, Any]]] = field(default_factory=list)

    def events(self, name: str) -> list[tuple[float, dict[str, Any]]]:
        return [
            (t, r)
            for t, r in self.reports
            if r.get("type") == "event" and r.get("event") == name
        ]

    def own_tiers(self) -> list[tuple[float, str]]:
        return [
            (t, r["tier"])
            for t, r in self.events("tier_changed")
            if r["user_id"] == self.bot.user_id
        ]

    def video_frames_from(self, user_id: str) -> int:
        return sum(
            t["frames"]
            for t in self.bot.stats()["tracks"]
            if t["direction"] == "inbound"
            and t["kind"] == "video"
            and t.get("from_user_id") == user_id
            and not t["ended"]
        )

    def video_bytes_from(self, user_id: str) -> int:
        return sum(
            t["bytes"]
            for t in self.bot.stats()["tracks"]
            if t["direction"] == "inbound"
            and t["kind"] == "video"
            and t.get("from_user_id") == user_id
            and not t["ended"]
        )


@pytest.fixture
async def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def server(clock: ManualClock) -> AsyncIterator[ReferenceServer]:
    async with ReferenceServer(ServerSettings(port=0), clock) as server:
        yield server


@contextlib.asynccontextmanager
async def bots(*configs: BotConfig) -> AsyncIterator[list[Running]]:
    running: list[Running] = []
    try:
        for config in configs:
            reports: list[tuple[float, dict[str, Any]]] = []
            bot = Bot(
                config,
                on_report=lambda r, out=reports: out.append((time.monotonic(), r)),
            )
            task = asyncio.create_task(bot.run())
            running.append(Running(bot, task, reports))
        yield running
    finally:
        for item in running:
            item.bot.leave()
        for item in running:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(item.task, 5)


def config(server: ReferenceServer, user_id: str, **more: Any) -> BotConfig:
    return BotConfig(
        server_url=server.url,
        room_id=ROOM,
        user_id=user_id,
        width=WIDTH,
        height=HEIGHT,
        **more,
    )


async def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"no {what} within {timeout} s")
        await asyncio.sleep(0.02)
    return time.monotonic()


async def fps_and_bitrate(
    receiver: Running, user_id: str, seconds: float = 2.0
) -> tuple[float, float]:
    frames, octets = (
        receiver.video_frames_from(user_id),
        receiver.video_bytes_from(user_id),
    )
    await asyncio.sleep(seconds)
    frames = receiver.video_frames_from(user_id) - frames
    octets = receiver.video_bytes_from(user_id) - octets
    return frames / seconds, octets * 8 / seconds


def speech_file(tmp_path: Path) -> Path:
    """Both espeak clips, 0.1 s apart, after 0.5 s of silence (about 7 s)."""
    parts = [np.zeros(8000, dtype=np.int16)]
    for name in SPEECH_FILES:
        samples, rate = read_wav(name)
        assert rate == 16000
        start, end = speech_start(samples, rate), speech_end(samples, rate)
        parts += [samples[int(start * rate) : int(end * rate)]]
        parts += [np.zeros(1600, dtype=np.int16)]
    path = tmp_path / "speech.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(np.concatenate(parts).tobytes())
    return path


async def test_speech_makes_the_bot_active_then_recent_then_viewer_at_the_tick(
    server: ReferenceServer, clock: ManualClock, tmp_path: Path
) -> None:
    listener_config = config(server, "listener", detect_remote_speaking=True)
    speaker_config = config(
        server, "speaker", audio_file=str(speech_file(tmp_path)), audio_file_loop=False
    )
    async with bots(listener_config) as (listener,):
        await wait_until(lambda: listener.bot.status == "in_call", 10, "join")
        async with bots(speaker_config) as (speaker,):
            started = await wait_until(
                lambda: speaker.bot.adaptation.speaking, 15, "speaking"
            )
            active = await wait_until(
                lambda: "active" in [t for _, t in speaker.own_tiers()],
                5,
                "tier active",
            )
            assert active - started < 1.0
            assert speaker.bot.adaptation.video_settings.fps == 30
            # Every participant heard it once, as a JSON boolean.
            await wait_until(
                lambda: (
                    listener.bot._session is not None
                    and (p := listener.bot._session.roster.get("speaker")) is not None
                    and p.speaking is True
                ),
                2,
                "listener's roster to show speaker speaking",
            )
            await wait_until(
                lambda: listener.video_frames_from("speaker") > 0, 5, "video"
            )
            # The listener's own detector hears the speaker in the received audio.
            await wait_until(
                lambda: listener.bot.adaptation.remote_speaking.get("speaker") is True,
                3,
                "voice activity in the received audio",
            )
            await asyncio.sleep(max(0.0, active + 0.5 - time.monotonic()))
            fps, bps = await fps_and_bitrate(listener, "speaker")
            assert 24 <= fps <= 36
            assert bps <= 2_500_000 * 1.1

            recent = await wait_until(
                lambda: speaker.own_tiers()[-1][1] == "recent", 12, "tier recent"
            )
            assert not speaker.bot.adaptation.speaking
            await asyncio.sleep(max(0.0, recent + 0.5 - time.monotonic()))
            fps, bps = await fps_and_bitrate(listener, "speaker")
            assert 12 <= fps <= 18
            assert bps <= 500_000 * 1.1

            # Recent until the first 5 s tick at least 30 s after speaking true.
            clock.advance(25_000)
            await asyncio.sleep(0.3)
            assert speaker.own_tiers()[-1][1] == "recent"
            clock.advance(5_000)
            viewer = await wait_until(
                lambda: speaker.own_tiers()[-1][1] == "viewer", 2, "tier viewer"
            )
            await asyncio.sleep(max(0.0, viewer + 0.5 - time.monotonic()))
            fps, bps = await fps_and_bitrate(listener, "speaker")
            assert 4 <= fps <= 6
            assert bps <= 150_000 * 1.1


class SolidTrack(MediaStreamTrack):
    """A still colour at 30 fps: the snapshot's centre must show it."""

    kind = "video"

    def __init__(self, rgb: tuple[int, int, int]) -> None:
        super().__init__()
        image = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
        image[:] = rgb
        self._yuv = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(
            format="yuv420p"
        )
        self._index = 0
        self._start: float | None = None

    async def recv(self) -> av.VideoFrame:
        if self._start is None:
            self._start = time.monotonic()
        delay = self._start + self._index / 30 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        frame = av.VideoFrame.from_ndarray(self._yuv.to_ndarray(), format="yuv420p")
        frame.pts = self._index * 3000
        frame.time_base = Fraction(1, 90000)
        self._index += 1
        return frame


async def test_viewer_snapshots_arrive_once_a_second_as_valid_jpegs(
    server: ReferenceServer,
) -> None:
    received: list[tuple[float, dict[str, Any]]] = []
    async with bots(config(server, "camera"), config(server, "watcher")) as (
        camera,
        watcher,
    ):
        await wait_until(
            lambda: camera.bot.adaptation.video is not None, 10, "camera's video"
        )
        video = camera.bot.adaptation.video
        assert video is not None
        video.source.stop()
        video.source = SolidTrack((255, 0, 0))
        assert watcher.bot._session is not None
        watcher.bot._session.on_event(
            lambda e: (
                received.append((time.monotonic(), e.model_dump()))
                if e.event == "video_snapshot"
                else None
            )
        )
        await wait_until(lambda: len(received) >= 1, 10, "a first snapshot")
        await asyncio.sleep(2.0)  # the solid source is in place
        start = len(received)
        await asyncio.sleep(10.0)
        window = received[start:]

        rate = len(window) / 10.0
        assert 0.8 <= rate <= 1.2
        for _, snapshot in window:
            assert snapshot["user_id"] == "camera"
            assert (snapshot["width"], snapshot["height"]) == (320, 240)
            assert abs(snapshot["timestamp"] - time.time() * 1000) < 15_000
            jpeg = base64.b64decode(snapshot["data"], validate=True)
            image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            assert image.shape == (240, 320, 3)
            blue, green, red = (int(v) for v in image[120, 160])
            assert red > 200 and green < 50 and blue < 50
        # The sender gets none of its own.
        assert "camera" not in camera.bot.adaptation.snapshots_received
        assert camera.bot.adaptation.snapshots_sent >= 11


async def test_quality_tier_request_changes_the_target_only_and_all_come_back(
    server: ReferenceServer,
) -> None:
    async with bots(
        config(server, "asker", allow_quality_tier_requests=True),
        config(server, "target"),
        config(server, "third"),
    ) as (asker, target, third):
        for who in (target, third):
            await wait_until(
                lambda w=who: asker.video_frames_from(w.bot.user_id) > 10,  # type: ignore[misc]
                15,
                f"video of {who.bot.user_id}",
            )
        fps, _ = await fps_and_bitrate(asker, "target")
        assert 4 <= fps <= 6

        await asker.bot.request_quality_tier("target", "active")
        back = await wait_until(
            lambda: (
                target.bot.stats()["joins"] >= 2
                and third.bot.stats()["joins"] >= 2
                and target.bot.status == third.bot.status == "in_call"
            ),
            5,
            "target and third back in the call",
        )
        frames = asker.video_frames_from("target"), asker.video_frames_from("third")
        await wait_until(
            lambda: (
                asker.video_frames_from("target") > frames[0] + 5
                and asker.video_frames_from("third") > frames[1] + 2
            ),
            5 - (time.monotonic() - back) + 2,
            "media again",
        )
        assert target.bot.adaptation.video_settings.tier == "active"
        assert third.bot.adaptation.video_settings.tier == "viewer"
        await asyncio.sleep(0.5)
        target_fps, _ = await fps_and_bitrate(asker, "target")
        third_fps, _ = await fps_and_bitrate(asker, "third")
        assert 24 <= target_fps <= 36
        assert 4 <= third_fps <= 6


async def test_attention_low_moves_the_bot_to_idle_and_it_applies_idle(
    server: ReferenceServer,
) -> None:
    async with bots(config(server, "watcher"), config(server, "sleepy")) as (
        watcher,
        sleepy,
    ):
        await wait_until(
            lambda: watcher.video_frames_from("sleepy") > 5, 15, "sleepy's video"
        )
        sleepy.bot.set_attention("low")
        idle = await wait_until(
            lambda: sleepy.own_tiers() and sleepy.own_tiers()[-1][1] == "idle",
            3,
            "tier idle",
        )
        settings = sleepy.bot.adaptation.video_settings
        assert (settings.tier, settings.fps, settings.max_bitrate) == (
            "idle",
            5,
            100_000,
        )
        assert not settings.snapshots
        sent = sleepy.bot.adaptation.snapshots_sent
        await asyncio.sleep(max(0.0, idle + 0.5 - time.monotonic()))
        fps, bps = await fps_and_bitrate(watcher, "sleepy")
        assert 4 <= fps <= 6
        assert bps <= 100_000 * 1.1
        assert sleepy.bot.adaptation.snapshots_sent == sent
        assert sleepy.bot.stats()["attention"] == "low"


async def test_server_profile_pauses_video_as_viewer_and_sends_a_still_when_idle(
    server: ReferenceServer,
) -> None:
    async with bots(
        config(server, "watcher"), config(server, "lean", tier_profile="server")
    ) as (watcher, lean):
        await wait_until(
            lambda: "lean" in watcher.bot.adaptation.snapshots_received,
            10,
            "a snapshot from the paused viewer",
        )
        fps, _ = await fps_and_bitrate(watcher, "lean")
        assert fps == 0
        assert lean.bot.adaptation.video_settings.paused

        # speaking_state true, as a client sends it, makes it active.
        session = lean.bot._session
        assert session is not None
        session.speaking_state(True)
        active = await wait_until(
            lambda: lean.own_tiers() and lean.own_tiers()[-1][1] == "active",
            3,
            "tier active",
        )
        await wait_until(lambda: watcher.video_frames_from("lean") > 0, 5, "video")
        await asyncio.sleep(max(0.0, active + 0.5 - time.monotonic()))
        fps, _ = await fps_and_bitrate(watcher, "lean")
        assert 24 <= fps <= 36
        assert watcher.bot.stats()["tracks"]  # 320x240 source: never scaled up
        (video,) = [
            t
            for t in watcher.bot.stats()["tracks"]
            if t.get("from_user_id") == "lean" and t["kind"] == "video"
        ]
        assert (video["width"], video["height"]) == (320, 240)

        lean.bot.set_attention("low")
        idle = await wait_until(
            lambda: lean.own_tiers()[-1][1] == "idle", 3, "tier idle"
        )
        await asyncio.sleep(max(0.0, idle + 1.0 - time.monotonic()))
        fps, _ = await fps_and_bitrate(watcher, "lean", 3.0)
        assert 0.3 <= fps <= 1.7
