"""Sensor widgets on a composite tile read back as the data they were given."""

from __future__ import annotations

from fractions import Fraction

import av
import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from callbot.sensors.measurements import Measurement, Scalar, Waveform
from callbot.sensors.synthetic import SyntheticConfig, SyntheticSensor
from media.compositor import Compositor, Rect, Tile
from media.overlays import font
from media.overlays.config import BadgeConfig, OverlayConfig, WaveformConfig
from media.overlays.tile import TileSensorOverlay, from_bgr, tile_vitals, to_bgr
from media.overlays.widgets import ValueBadge, WaveformStrip
from media.planar import I420
from media.sources.pattern import PatternRenderer

SENSOR = "hr-1"
START_MS = 1_772_446_530_000
EPOCH = START_MS / 1000
Image = NDArray[np.uint8]


def video(name: str, index: int = 5) -> av.VideoFrame:
    image = PatternRenderer(name, 640, 360).render(index, 0.0)
    return av.VideoFrame.from_ndarray(image, format="bgr24").reformat(format="yuv420p")


def vitals(seconds: float) -> list[Measurement]:
    sensor = SyntheticSensor(SyntheticConfig(sensor_id=SENSOR, seed=5), START_MS)
    return sensor.advance(START_MS + int(seconds * 1000))


def through_h264(image: Image, frames: int = 6) -> Image:
    """The composite after libx264 at 2 Mbit/s and back, as a viewer sees it."""
    height, width = image.shape[:2]
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height = width, height
    encoder.pix_fmt = "yuv420p"
    encoder.bit_rate = 2_000_000
    encoder.time_base = Fraction(1, 15)
    encoder.options = {"preset": "veryfast", "tune": "zerolatency"}
    decoder = av.CodecContext.create("h264", "r")
    decoded = None
    for i in range(frames + 1):
        frame = (
            av.VideoFrame.from_ndarray(image, format="bgr24") if i < frames else None
        )
        if frame is not None:
            frame.pts = i
        for packet in encoder.encode(frame):
            for out in decoder.decode(packet):
                decoded = out
    assert decoded is not None
    return np.asarray(decoded.to_ndarray(format="bgr24"), np.uint8)


def tile_of(image: Image, area: Rect) -> Image:
    return image[area.y : area.y + area.height, area.x : area.x + area.width]


def heart_rate_at(measurements: list[Measurement], now_ms: int) -> float:
    rates = [
        m
        for m in measurements
        if isinstance(m, Scalar) and m.attribute_id == "heartrate"
    ]
    return max(
        (m for m in rates if m.timestamp <= now_ms), key=lambda m: m.timestamp
    ).payload


def ecg_of(measurements: list[Measurement]) -> Waveform:
    return next(
        m for m in measurements if isinstance(m, Waveform) and m.attribute_id == "ecg"
    )


@pytest.mark.parametrize("encoded", [False, True])
def test_vitals_on_one_tile_read_back_and_the_other_tile_is_untouched(
    encoded: bool,
) -> None:
    config = tile_vitals(SENSOR)
    overlay = TileSensorOverlay(config, epoch=EPOCH)
    measurements = vitals(12.0)
    overlay.feed(measurements)
    tiles = [Tile("alice", "alice", video("alice")), Tile("bob", "bob", video("bob"))]
    seconds = 10.0
    now_ms = START_MS + 10_000

    compositor = Compositor(1280, 720, tile_overlays={"alice": overlay})
    image = compositor.render_bgr(tiles, seconds)
    plain = Compositor(1280, 720).render_bgr(tiles, seconds)
    if encoded:
        image, plain = through_h264(image), through_h264(plain)
    alice, bob = compositor.areas["alice"], compositor.areas["bob"]

    # The badge, read with the widgets' own font, shows the heart rate.
    badge_config, _, strip_config = config.widgets
    assert isinstance(badge_config, BadgeConfig)
    badge = ValueBadge(badge_config)
    expected_bpm = heart_rate_at(measurements, now_ms)
    assert badge.read(tile_of(image, alice)) == str(round(expected_bpm))

    # The ECG strip follows the samples column by column.
    assert isinstance(strip_config, WaveformConfig)
    strip = WaveformStrip(strip_config)
    ecg = ecg_of(measurements)
    shown = strip.read(tile_of(image, alice))
    expected = strip.column_values(
        np.array(ecg.timestamps, np.float64), np.array(ecg.payload), now_ms
    )
    ok = ~np.isnan(shown)
    assert ok.mean() > 0.95
    assert float(np.corrcoef(shown[ok], expected[ok])[0, 1]) >= 0.9

    # Where the widgets are on Alice's tile, Bob's shows his own picture
    # (exactly, before encoding; within the codec's noise after it).
    patch = overlay.patch(alice.width, alice.height)
    assert patch is not None
    x, y, w, h = patch

    def change(area: Rect) -> NDArray[np.int16]:
        shown = tile_of(image, area)[y : y + h, x : x + w].astype(np.int16)
        return np.abs(shown - tile_of(plain, area)[y : y + h, x : x + w])

    assert change(alice).mean() > 40
    assert change(bob).mean() < (1.0 if encoded else 1e-9)
    assert badge.read(tile_of(image, bob)) != str(round(expected_bpm))
    if not encoded:
        assert np.array_equal(tile_of(image, bob), tile_of(plain, bob))
        # Alice's tile below the widgets' patch is untouched too.
        below = tile_of(image, alice)[y + h :]
        assert np.array_equal(below, tile_of(plain, alice)[y + h :])


def test_stale_vitals_on_a_tile_are_grey_with_their_age() -> None:
    config = OverlayConfig(
        widgets=[BadgeConfig(sensor_id=SENSOR, x=20, y=30, width=176, height=56)]
    )
    overlay = TileSensorOverlay(config, epoch=EPOCH)
    overlay.feed([Scalar(SENSOR, "heartrate", 81.0, START_MS + 1_000)])
    compositor = Compositor(1280, 720, tile_overlays={"alice": overlay})
    tiles = [Tile("alice", "alice", video("alice"))]

    image = compositor.render_bgr(tiles, 13.0)
    tile = tile_of(image, compositor.areas["alice"])
    badge = ValueBadge(config.widgets[0])  # type: ignore[arg-type]
    assert badge.read(tile) == "81"
    x, y = badge.digits_origin
    digits = tile[y : y + 7 * badge.scale, x : x + 17 * badge.scale].reshape(-1, 3)
    bright = digits[digits.max(axis=1) > 100].astype(np.int16)
    # Only the stale grey, never the live green.
    assert bright.size and np.abs(bright - 128).max() < 12
    age_w, _ = font.text_size("12s", 2)
    age = font.read_text(
        tile, (20 + 176 - 6 - age_w, 30 + 56 - 6 - 14), 2, 3, alphabet="0123456789s"
    )
    assert age == "12s"


def test_a_name_card_and_a_snapshot_carry_the_widgets_too() -> None:
    config = OverlayConfig(widgets=[BadgeConfig(sensor_id=SENSOR, x=8, y=8)])
    overlay = TileSensorOverlay(config, epoch=EPOCH)
    overlay.feed([Scalar(SENSOR, "heartrate", 64.0, START_MS)])
    snapshot = PatternRenderer("bob", 320, 180).render(1, 0.0)
    compositor = Compositor(1280, 720, tile_overlays={"alice": overlay, "bob": overlay})
    tiles = [Tile("alice", "alice"), Tile("bob", "bob", snapshot, snapshot=True)]
    badge = ValueBadge(config.widgets[0])  # type: ignore[arg-type]

    image = compositor.render_bgr(tiles, 1.0)
    assert badge.read(tile_of(image, compositor.areas["alice"])) == "64"
    assert badge.read(tile_of(image, compositor.areas["bob"])) == "64"

    # The cached card and still are drawn on copies: without the overlay,
    # the tiles are plain again.
    compositor.tile_overlays.clear()
    image = compositor.render_bgr(tiles, 2.0)
    assert badge.read(tile_of(image, compositor.areas["alice"])) != "64"
    assert badge.read(tile_of(image, compositor.areas["bob"])) != "64"


def test_measurements_of_other_sensors_are_not_kept() -> None:
    overlay = TileSensorOverlay(tile_vitals(SENSOR))
    overlay.feed(
        [
            Scalar("other", "heartrate", 90.0, START_MS),
            Scalar(SENSOR, "heartrate", 70.0, START_MS),
        ]
    )
    assert overlay.overlay.history.latest("other", "heartrate") is None
    assert overlay.overlay.history.latest(SENSOR, "heartrate") == (START_MS, 70.0)


def test_patch_is_even_and_clipped_to_the_tile() -> None:
    config = OverlayConfig(
        widgets=[
            BadgeConfig(sensor_id=SENSOR, x=15, y=9, width=101, height=41),
            WaveformConfig(sensor_id=SENSOR, x=33, y=61, width=500, height=80),
        ]
    )
    overlay = TileSensorOverlay(config)
    assert overlay.patch(1000, 1000) == (14, 8, 520, 134)
    assert overlay.patch(300, 100) == (14, 8, 286, 92)
    assert overlay.patch(14, 100) is None


def test_patch_conversion_keeps_colours_within_a_level() -> None:
    image = PatternRenderer("alice", 344, 144).render(3, 0.0)
    cv2.line(image, (0, 70), (343, 71), (102, 255, 51), 1)
    fast = from_bgr(image)
    reference = I420.from_bgr(image)
    assert np.abs(fast.buffer.astype(np.int16) - reference.buffer).max() <= 2
    assert np.abs(to_bgr(reference).astype(np.int16) - reference.to_bgr()).max() <= 2
