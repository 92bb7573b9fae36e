"""The published tracks: frame rate, size, pause and still picture follow the tier."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
from aiortc import MediaStreamTrack

from callbot.bot.publishing import PublishedAudioTrack, PublishedVideoTrack
from callbot.bot.tiers import VideoSettings

TIME_BASE = Fraction(1, 90000)


class CountingSource(MediaStreamTrack):
    """30 fps 320x240 frames, as fast as asked (no pacing)."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self.index = 0

    async def recv(self) -> av.VideoFrame:
        image = np.full((240, 320, 3), 200, dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(
            format="yuv420p"
        )
        frame.pts = self.index * 3000
        frame.time_base = TIME_BASE
        self.index += 1
        return frame


def settings(fps: int, **more: object) -> VideoSettings:
    values: dict[str, object] = {
        "tier": "x",
        "fps": fps,
        "max_bitrate": 100_000,
        "width": 320,
        "height": 240,
    }
    values.update(more)
    return VideoSettings(**values)  # type: ignore[arg-type]


async def sent_times(track: PublishedVideoTrack, count: int) -> list[float]:
    out = []
    for _ in range(count):
        frame = await track.recv()
        assert frame.pts is not None and frame.time_base is not None
        out.append(float(frame.pts * frame.time_base))
    return out


async def test_frames_are_dropped_down_to_the_tier_rate() -> None:
    for fps, spacing in ((30, 1 / 30), (15, 2 / 30), (5, 6 / 30)):
        track = PublishedVideoTrack(CountingSource(), settings(fps))
        times = await sent_times(track, 10)
        gaps = np.diff(times)
        assert np.allclose(gaps, spacing), (fps, gaps)
        assert track.frames == 10


async def test_a_rate_change_applies_from_the_next_frame() -> None:
    source = CountingSource()
    track = PublishedVideoTrack(source, settings(5))
    await sent_times(track, 2)
    track.apply(settings(30))
    times = await sent_times(track, 3)
    assert np.allclose(np.diff(times), 1 / 30)


async def test_frames_are_scaled_to_the_settings_size_and_keep_their_time() -> None:
    track = PublishedVideoTrack(CountingSource(), settings(30, width=160, height=120))
    frame = await track.recv()
    assert (frame.width, frame.height) == (160, 120)
    assert frame.pts == 0 and frame.time_base == TIME_BASE
    assert track.latest is not None and track.latest.width == 320


async def test_static_picture_replaces_the_source() -> None:
    track = PublishedVideoTrack(CountingSource(), settings(1, static=True))
    times = await sent_times(track, 3)
    assert np.allclose(np.diff(times), 1.0)
    frame = await track.recv()
    rgb = frame.to_ndarray(format="rgb24")
    assert abs(int(rgb[120, 160, 0]) - 96) < 8


async def test_paused_sends_nothing_but_keeps_the_latest_frame() -> None:
    import asyncio

    source = CountingSource()
    track = PublishedVideoTrack(source, settings(0, paused=True))

    async def wait_then_resume() -> None:
        while source.index < 20:
            await asyncio.sleep(0)
        track.apply(settings(30))

    resume = asyncio.create_task(wait_then_resume())
    frame = await track.recv()
    await resume
    assert source.index >= 20 and track.frames == 1
    assert frame.pts is not None and frame.pts >= 19 * 3000
    assert track.latest is frame


class ToneSource(MediaStreamTrack):
    kind = "audio"

    async def recv(self) -> av.AudioFrame:
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 960), dtype=np.int16), format="s16", layout="mono"
        )
        frame.sample_rate = 48000
        return frame


async def test_audio_listener_sees_every_frame_and_a_failing_one_is_detached() -> None:
    seen: list[int] = []
    track = PublishedAudioTrack(ToneSource(), lambda f: seen.append(f.samples))
    for _ in range(3):
        await track.recv()
    assert seen == [960, 960, 960]

    def broken(frame: av.AudioFrame) -> None:
        raise RuntimeError("boom")

    failing = PublishedAudioTrack(ToneSource(), broken)
    frame = await failing.recv()
    assert frame.samples == 960 and failing.listener is None
    await failing.recv()
