"""Snapshots as the browser sends them: 320x240 JPEG q70, bare base64, 1 per second."""

from __future__ import annotations

import base64

import av
import cv2
import numpy as np
import pytest

from callbot.bot.snapshots import (
    SnapshotError,
    SnapshotSchedule,
    decode_snapshot,
    encode_jpeg,
    encode_snapshot,
)


def solid_frame(rgb: tuple[int, int, int], fmt: str = "yuv420p") -> av.VideoFrame:
    image = np.zeros((480, 640, 3), dtype=np.uint8)
    image[:] = rgb
    frame = av.VideoFrame.from_ndarray(image, format="rgb24")
    return frame.reformat(format=fmt) if fmt != "rgb24" else frame


@pytest.mark.parametrize("fmt", ["yuv420p", "rgb24"])
def test_pure_red_frame_decodes_as_red_320x240_jpeg(fmt: str) -> None:
    snapshot = encode_snapshot(solid_frame((255, 0, 0), fmt), 1772446530123)

    assert not snapshot.data.startswith("data:")
    jpeg = base64.b64decode(snapshot.data, validate=True)
    assert jpeg[:3] == b"\xff\xd8\xff"
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (240, 320, 3)
    blue, green, red = (int(v) for v in image[120, 160])
    assert red > 230 and green < 30 and blue < 30
    assert snapshot.payload() == {
        "data": snapshot.data,
        "width": 320,
        "height": 240,
        "timestamp": 1772446530123,
    }


def test_aspect_ratio_is_not_kept_like_the_browser_canvas() -> None:
    wide = np.zeros((100, 800, 3), dtype=np.uint8)
    wide[:, :400] = (255, 0, 0)  # left half blue (BGR)
    image = decode_snapshot(encode_snapshot(wide, 0).data)
    assert image.shape == (240, 320, 3)
    assert image[120, 80, 0] > 200 and image[120, 240, 0] < 30


def test_quality_70_is_between_low_and_high_quality_sizes() -> None:
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    sizes = [len(encode_jpeg(noisy, quality=q)) for q in (30, 70, 95)]
    assert sizes[0] < len(encode_jpeg(noisy)) == sizes[1] < sizes[2]


def test_decode_accepts_a_data_url_and_refuses_garbage() -> None:
    snapshot = encode_snapshot(solid_frame((0, 255, 0)), 0)
    image = decode_snapshot("data:image/jpeg;base64," + snapshot.data)
    assert image[120, 160, 1] > 230
    for bad in (None, 42, "not base64!", base64.b64encode(b"not a jpeg").decode()):
        with pytest.raises(SnapshotError):
            decode_snapshot(bad)


def test_schedule_sends_one_at_once_then_one_per_second() -> None:
    schedule = SnapshotSchedule()
    assert not schedule.due(0.0)

    schedule.enable(10.0)
    taken = [t / 100 for t in range(1000, 2001, 5) if schedule.due(t / 100)]

    assert taken == [float(s) for s in range(10, 21)]


def test_schedule_stops_when_disabled_and_restarts_when_enabled_again() -> None:
    schedule = SnapshotSchedule()
    schedule.enable(0.0)
    assert schedule.due(0.0)
    schedule.disable()
    assert not schedule.due(1.0)
    schedule.enable(1.3)
    assert schedule.due(1.3)
    assert not schedule.due(2.2)
    assert schedule.due(2.3)
    # Re-enabling while enabled restarts: one at once.
    schedule.enable(2.5)
    assert schedule.due(2.5)


def test_schedule_skips_missed_snapshots_after_a_stall() -> None:
    schedule = SnapshotSchedule()
    schedule.enable(0.0)
    assert schedule.due(0.0)
    assert schedule.due(5.5)
    assert not schedule.due(6.0)
    assert schedule.due(6.5)
