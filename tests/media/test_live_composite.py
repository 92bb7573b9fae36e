"""The live composite driven on an injected clock: MP4 and HLS as a user opens them."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np

from media.compositor import grid_cells
from media.live_composite import LiveComposite
from media.sinks.composite_output import PLAYLIST_NAME, EncodingSettings
from tests.media.composite_checks import (
    cell_colour,
    close_to,
    frame_at,
    is_fast_start,
    playlist_segments,
    streams,
)

RED, BLUE, GREEN = (0, 0, 220), (220, 0, 0), (0, 200, 0)
FPS = 10
SECONDS = 6.0
SETTINGS = EncodingSettings(width=640, height=360, fps=FPS, segment_seconds=2.0)


def solid(bgr: tuple[int, int, int]) -> av.VideoFrame:
    image = np.full((240, 320, 3), bgr, np.uint8)
    return av.VideoFrame.from_ndarray(image, format="bgr24").reformat(format="yuv420p")


def tone(index: int) -> av.AudioFrame:
    t = (np.arange(960) + index * 960) / 48000
    wave = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
    frame = av.AudioFrame.from_ndarray(
        np.repeat(wave, 2).reshape(1, -1), format="s16", layout="stereo"
    )
    frame.sample_rate = 48000
    return frame


def run_call(tmp_path: Path) -> LiveComposite:
    """alice (red) throughout; bob (blue) stalls at 3 s and has a green
    snapshot; carol is audio only and sends a tone."""
    clock = [0.0]
    composite = LiveComposite(
        SETTINGS,
        tmp_path / "out.mp4",
        hls_dir=tmp_path / "hls",
        clock=lambda: clock[0],
    )
    for user_id in ("alice", "bob", "carol"):
        composite.participant_joined(user_id, user_id.title())
    ok, jpeg = cv2.imencode(".jpg", np.full((180, 320, 3), GREEN, np.uint8))
    assert ok
    composite.snapshot("bob", jpeg.tobytes())
    red, blue = solid(RED), solid(BLUE)
    composite.open(0.0)
    audio_index = 0
    for index in range(int(SECONDS * FPS)):
        now = clock[0] = index / FPS
        composite.video_frame("alice", red)
        if now < 3.0:
            composite.video_frame("bob", blue)
        while audio_index * 0.02 < now + 0.1:
            composite.audio_frame("carol", tone(audio_index))
            audio_index += 1
        composite.speaking("carol", 1.0 <= now < 4.0)
        assert composite.tick(now)
    composite.close()
    return composite


def test_mp4_holds_the_call_with_each_participant_in_its_cell(tmp_path: Path) -> None:
    composite = run_call(tmp_path)
    mp4 = tmp_path / "out.mp4"

    names, duration = streams(mp4)
    assert sorted(names) == ["aac", "h264"]
    assert abs(duration - SECONDS) < 0.2
    assert is_fast_start(mp4)
    assert composite.stats.dropped == 0

    cells = grid_cells(3, SETTINGS.width, SETTINGS.height)
    live = frame_at(mp4, 2.0)
    assert close_to(cell_colour(live, cells[0]), RED)
    assert close_to(cell_colour(live, cells[1]), BLUE)
    # carol has no video: her name card, with the speaking border at 2 s
    b, g, r = live[cells[2].y + 2, cells[2].x + cells[2].width // 2]
    assert g > 150 and r < 150
    stalled = frame_at(mp4, 5.0)
    assert close_to(cell_colour(stalled, cells[0]), RED)
    b, g, r = cell_colour(stalled, cells[1])
    assert g > r + 40 and g > b + 40, (b, g, r)  # bob's snapshot, dimmed

    with av.open(str(mp4)) as container:
        samples = np.concatenate(
            [f.to_ndarray().reshape(-1) for f in container.decode(audio=0)]
        )
    middle = samples[len(samples) // 3 : 2 * len(samples) // 3]
    assert np.sqrt(np.mean(np.square(middle.astype(np.float64)))) > 0.05


def test_hls_playlist_lists_segments_that_open(tmp_path: Path) -> None:
    run_call(tmp_path)
    playlist = tmp_path / "hls" / PLAYLIST_NAME
    text = playlist.read_text()
    assert "#EXT-X-ENDLIST" in text
    segments = playlist_segments(playlist)
    assert len(segments) == 3
    total = 0.0
    for segment in segments:
        names, _ = streams(segment)
        assert sorted(names) == ["aac", "h264"]
        with av.open(str(segment)) as container:
            frames = list(container.decode(video=0))
        assert frames and frames[0].key_frame
        total += len(frames) / FPS
    assert abs(total - SECONDS) < 0.2


def test_falling_behind_drops_frames_instead_of_queueing(tmp_path: Path) -> None:
    composite = LiveComposite(SETTINGS, tmp_path / "out.mp4", max_lag=0.5)
    composite.participant_joined("alice", None)
    composite.open(100.0)
    assert composite.tick(100.0)
    assert not composite.tick(100.05)  # the next frame is not due yet
    assert composite.tick(101.0)  # a second late: one frame, nine dropped
    composite.close()
    assert composite.stats.frames == 2
    assert composite.stats.dropped == FPS - 1
    _, duration = streams(tmp_path / "out.mp4")
    assert abs(duration - 1.1) < 0.15


def test_a_late_wake_up_is_caught_up_without_dropping(tmp_path: Path) -> None:
    composite = LiveComposite(SETTINGS, tmp_path / "out.mp4", max_lag=0.25)
    composite.open(0.0)
    assert composite.tick(0.0)
    # Woken 0.2 s late: frames 1 and 2 are overdue, written one by one.
    assert composite.tick(0.2)
    assert composite.tick(0.2)
    assert not composite.tick(0.2)
    composite.close()
    assert (composite.stats.frames, composite.stats.dropped) == (3, 0)
