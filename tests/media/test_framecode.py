"""The frame code of the test pattern, read back from raw and VP8-coded frames."""

from __future__ import annotations

import fractions

import av
import cv2
import numpy as np
import pytest

from media.markers.framecode import (
    FrameCode,
    read_flash,
    read_frame_code,
    unwrap_counter,
    unwrap_sent_ms,
)
from media.sources.pattern import PatternRenderer

START = 1_764_860_400.250  # a wall clock in seconds


def luma(image: np.ndarray) -> np.ndarray:
    return np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))


def test_raw_frames_carry_counter_and_send_time() -> None:
    renderer = PatternRenderer("qa", 640, 480)
    for index in (0, 1, 29, 1000, (1 << 20) + 5):
        wall = START + index / 30
        code = read_frame_code(luma(renderer.render(index, wall)))
        assert code == FrameCode(index % (1 << 20), int(wall * 1000) % (1 << 36))


def test_frames_without_the_code_read_as_none() -> None:
    renderer = PatternRenderer("browser", 640, 480, frame_code=False)
    assert read_frame_code(luma(renderer.render(3, START))) is None
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, (480, 640), dtype=np.uint8)
    assert read_frame_code(noise) is None
    assert read_frame_code(np.zeros((480, 640), np.uint8)) is None


def test_one_flipped_cell_fails_the_crc() -> None:
    image = luma(PatternRenderer("qa").render(7, START))
    image[16 + 4 : 32 - 4, 352 + 4 : 368 - 4] ^= 0xFF  # first code cell
    assert read_frame_code(image) is None


def vp8_roundtrip(
    images: list[np.ndarray], bitrate: int, size: tuple[int, int] | None = None
) -> list[np.ndarray]:
    height, width = images[0].shape[:2]
    if size is not None:
        width, height = size
    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height = width, height
    encoder.pix_fmt = "yuv420p"
    encoder.time_base = fractions.Fraction(1, 30)
    encoder.bit_rate = bitrate
    encoder.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    decoder = av.CodecContext.create("vp8", "r")
    out: list[np.ndarray] = []
    for i, image in enumerate(images):
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        frame = frame.reformat(width=width, height=height, format="yuv420p")
        frame.pts = i
        for packet in encoder.encode(frame):
            for decoded in decoder.decode(packet):
                out.append(decoded.to_ndarray(format="gray"))
    return out


@pytest.mark.parametrize(
    ("size", "bitrate"),
    [((640, 480), 300_000), ((640, 480), 150_000), ((320, 240), 100_000)],
)
def test_the_code_survives_vp8(size: tuple[int, int], bitrate: int) -> None:
    width, height = size
    renderer = PatternRenderer("qa", width, height)
    walls = [START + i / 30 for i in range(45)]
    images = [renderer.render(i, wall) for i, wall in enumerate(walls)]

    decoded = vp8_roundtrip(images, bitrate)

    codes = [read_frame_code(image) for image in decoded]
    read = [c for c in codes if c is not None]
    assert len(read) >= 0.95 * len(images)
    for i, code in enumerate(codes):
        if code is not None:
            assert code == FrameCode(i, int(walls[i] * 1000) % (1 << 36))


def test_the_code_survives_scaling_before_vp8() -> None:
    renderer = PatternRenderer("qa", 640, 480)
    images = [renderer.render(i, START + i / 30) for i in range(20)]
    decoded = vp8_roundtrip(images, 200_000, size=(480, 360))
    counters = [c.counter for c in map(read_frame_code, decoded) if c is not None]
    assert counters[-5:] == [15, 16, 17, 18, 19]


def test_flash_is_on_for_the_first_100_ms_of_each_second() -> None:
    renderer = PatternRenderer("qa", 640, 480)
    walls = [1000.0 + i / 30 for i in range(60)]
    images = [renderer.render(i, wall) for i, wall in enumerate(walls)]
    decoded = vp8_roundtrip(images, 300_000)
    flashes = [read_flash(image) for image in decoded]
    expected = [(wall % 1.0) < 0.1 for wall in walls]
    assert flashes == expected


def test_unwrapping_picks_the_value_nearest_now() -> None:
    now_ms = int(START * 1000)
    sent = now_ms - 120
    assert unwrap_sent_ms(sent % (1 << 36), now_ms) == sent
    assert unwrap_counter(3, (1 << 20) - 2) == (1 << 20) + 3
    assert unwrap_counter(10, 12) == 10
