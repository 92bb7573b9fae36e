"""QA metrics from frames and events on injected times (sans-I/O)."""

from __future__ import annotations

import numpy as np
import pytest

from callbot.qa.metrics import (
    AudioMetrics,
    ParticipantMetrics,
    VideoMetrics,
    agreement,
)
from media.markers.framecode import FrameCode
from media.sources.tone import FRAME_SAMPLES, SAMPLE_RATE, ToneTrack

T0 = 1_764_860_400.0


def code(counter: int, sent: float) -> FrameCode:
    return FrameCode(counter, int(sent * 1000) % (1 << 36))


def feed(video: VideoMetrics, counters: list[int], *, latency: float = 0.08) -> float:
    """Frames sent at 30 fps from T0 + 1, each received ``latency`` later."""
    now = T0
    for counter in counters:
        sent = T0 + 1 + counter / 30
        now = sent + latency
        video.frame(now, 640, 480, code(counter, sent))
    return now


def test_30_fps_without_gaps_has_no_freeze_and_its_latency() -> None:
    video = VideoMetrics("v", "pub", T0)
    feed(video, list(range(300)))
    summary = video.summary()
    assert summary["fps"]["mean"] == pytest.approx(30.0, abs=0.01)
    assert [s["fps"] for s in summary["fps_series"]] == [30.0] * 9
    assert summary["freezes"]["count"] == 0
    assert summary["latency_ms"]["median"] == pytest.approx(80.0, abs=1)
    assert summary["skipped_frames"] == 0 and summary["repeated_frames"] == 0


def test_a_2_s_gap_is_one_freeze_of_2_s_with_its_skipped_frames() -> None:
    video = VideoMetrics("v", "pub", T0)
    feed(video, [*range(0, 90), *range(150, 240)])
    freezes = video.summary()["freezes"]
    assert freezes["count"] == 1
    assert freezes["total_seconds"] == pytest.approx(61 / 30, abs=0.001)
    assert video.skipped == 60


def test_gaps_up_to_300_ms_are_not_freezes() -> None:
    video = VideoMetrics("v", "pub", T0)
    feed(video, [*range(0, 30), *range(38, 60)])  # 9 frame times = 300 ms
    assert video.summary()["freezes"]["count"] == 0


def test_a_repeated_picture_is_no_new_frame_and_extends_a_freeze() -> None:
    video = VideoMetrics("v", "pub", T0)
    now = feed(video, list(range(30)))
    for i in range(1, 15):  # the same frame again for 0.5 s
        video.frame(now + i / 30, 640, 480, code(29, T0 + 1 + 29 / 30))
    video.frame(now + 0.5, 640, 480, code(30, T0 + 1 + 30 / 30))
    summary = video.summary()
    assert summary["repeated_frames"] == 14
    assert summary["freezes"]["count"] == 1
    assert summary["freezes"]["total_seconds"] == pytest.approx(0.5, abs=0.001)


def test_resolution_changes_are_listed_with_their_time() -> None:
    video = VideoMetrics("v", "pub", T0)
    video.frame(T0 + 1.0, 640, 480, None)
    video.frame(T0 + 1.033, 640, 480, None)
    video.frame(T0 + 1.066, 320, 240, None)
    summary = video.summary()
    assert summary["resolution_changes"] == 1
    assert summary["sizes"][1] == {"at": 1.066, "width": 320, "height": 240}
    # Without the pattern: no latency, no skipped/repeated counts.
    assert summary["pattern"] is False
    assert summary["latency_ms"]["median"] is None
    assert summary["skipped_frames"] is None


def test_beeps_give_the_audio_latency() -> None:
    audio = AudioMetrics("a", "pub", T0)
    track = ToneTrack()
    start = T0 + 0.5
    for i in range(200):
        sent = start + i * FRAME_SAMPLES / SAMPLE_RATE
        frame = track.frame(i, sent)
        mono = frame.to_ndarray().reshape(-1).astype(np.int16)
        audio.audio(sent + 0.12, mono, SAMPLE_RATE)
    summary = audio.summary()
    assert summary["beeps"] == 4
    assert summary["latency_ms"]["median"] == pytest.approx(120, abs=11)


def test_snapshot_rate_counts_only_time_in_the_viewer_tier() -> None:
    person = ParticipantMetrics("pub", T0)
    person.tier_changed(T0 + 0, "active")
    person.tier_changed(T0 + 10, "viewer")
    for k in range(5):
        person.snapshot(T0 + 11 + 2 * k)
    person.tier_changed(T0 + 20, "active")
    person.snapshot(T0 + 21)
    assert person.snapshot_rate_while_viewer(30.0) == pytest.approx(0.5)
    assert [s["tier"] for s in person.timeline(30.0)] == ["active", "viewer", "active"]


def test_speaking_agreement_is_overlap_over_union() -> None:
    assert agreement([(0, 2)], [(1, 3)]) == pytest.approx(1 / 3)
    assert agreement([], []) == 1.0
    assert agreement([(0, 1)], []) == 0.0
