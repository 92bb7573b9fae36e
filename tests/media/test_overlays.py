"""Overlay widgets: what they draw reads back as the data they were given."""

from __future__ import annotations

import logging
from fractions import Fraction

import av
import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from callbot.sensors.measurements import Scalar, Waveform
from callbot.sensors.synthetic import SyntheticConfig, SyntheticSensor
from media.overlays import font
from media.overlays.config import (
    BadgeConfig,
    LabelConfig,
    OverlayConfig,
    SparklineConfig,
    WaveformConfig,
)
from media.overlays.overlay import SensorOverlay
from media.overlays.widgets import ValueBadge, WaveformStrip, format_age
from media.sources.pattern import PatternRenderer, PatternTrack

SENSOR = "bot-hr-1"
START_MS = 1_772_446_530_000
WIDTH, HEIGHT = 640, 480


def pattern() -> np.ndarray:
    return PatternRenderer("overlay bot", WIDTH, HEIGHT).render(7, 0.0)


def vp8_round_trip(image: np.ndarray, frames: int = 10) -> np.ndarray:
    """The picture after libvpx at 1 Mbit/s and back, as a receiver sees it."""
    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height = WIDTH, HEIGHT
    encoder.pix_fmt = "yuv420p"
    encoder.bit_rate = 1_000_000
    encoder.time_base = Fraction(1, 30)
    decoder = av.CodecContext.create("vp8", "r")
    yuv = cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420)
    decoded = None
    for i in range(frames):
        frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.pts = i
        for packet in encoder.encode(frame):
            for out in decoder.decode(packet):
                decoded = out
    assert decoded is not None
    return decoded.to_ndarray(format="bgr24")


def ecg_stream(seconds: float, rate_hz: int = 250) -> Waveform:
    sensor = SyntheticSensor(
        SyntheticConfig(sensor_id=SENSOR, seed=3, ecg_rate_hz=rate_hz), START_MS
    )
    out = sensor.advance(START_MS + int(seconds * 1000))
    return next(m for m in out if isinstance(m, Waveform) and m.attribute_id == "ecg")


def expected_per_column(strip: WaveformStrip, ecg: Waveform, now_ms: int) -> np.ndarray:
    times = strip.column_times(now_ms)
    return np.interp(times, np.array(ecg.timestamps), np.array(ecg.payload))


# -- waveform strip ---------------------------------------------------------------


@pytest.mark.parametrize("through_vp8", [False, True])
def test_ecg_strip_reads_back_as_the_ecg_it_was_given(through_vp8: bool) -> None:
    config = WaveformConfig(sensor_id=SENSOR, x=16, y=270, width=608, height=100)
    overlay = SensorOverlay(OverlayConfig(widgets=[config]))
    ecg = ecg_stream(8.0)
    overlay.feed([ecg])
    now_ms = START_MS + 7_000

    image = pattern()
    overlay.draw(image, now_ms)
    if through_vp8:
        image = vp8_round_trip(image)

    strip = overlay.widgets[0]
    assert isinstance(strip, WaveformStrip)
    shown = strip.read(image)
    expected = expected_per_column(strip, ecg, now_ms)
    ok = ~np.isnan(shown)
    assert ok.mean() > 0.95
    correlation = float(np.corrcoef(shown[ok], expected[ok])[0, 1])
    assert correlation >= 0.9
    # The R peaks (about 1.2 mV) reach their height: the trace's top pixel
    # (2 px wide line, 49 px per mV) within 0.1 mV.
    grey = cv2.cvtColor(image[270:370, 16:624], cv2.COLOR_BGR2GRAY)
    top_row = int(np.argwhere(grey > 120)[:, 0].min())
    top_value = 1.4 - top_row / 98 * 2.0
    assert abs(top_value - expected.max()) < 0.1


def test_strip_scrolls_at_paper_speed() -> None:
    config = WaveformConfig(sensor_id=SENSOR, x=0, y=0, width=400, height=100)
    strip = WaveformStrip(config)
    assert config.pixels_per_second == 100.0  # 25 mm/s at 4 px/mm
    times = strip.column_times(10_000)
    assert times[-1] == 10_000 - config.delay_ms
    assert times[-1] - times[-101] == pytest.approx(1000.0)


def test_stale_waveform_is_grey_with_its_age() -> None:
    config = WaveformConfig(
        sensor_id=SENSOR, x=0, y=0, width=400, height=100, stale_after=2.0
    )
    overlay = SensorOverlay(OverlayConfig(widgets=[config]))
    ecg = ecg_stream(3.0)
    overlay.feed([ecg])
    image = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    # Three seconds after the last sample, the last 1.75 s are still in view.
    overlay.draw(image, ecg.timestamps[-1] + 3_000)
    region = image[0:100, 0:400].reshape(-1, 3)
    bright = region[region.max(axis=1) > 100]
    assert bright.size
    # Only the stale grey (128, 128, 128) is drawn, never the live green.
    assert np.all(np.abs(bright.astype(int) - 128).max(axis=1) < 2)
    age_w, _ = font.text_size("3s", 2)
    text = font.read_text(image, (400 - 6 - age_w, 6), 2, 2, alphabet="0123456789s")
    assert text == "3s"


# -- badge --------------------------------------------------------------------------


@pytest.mark.parametrize("through_vp8", [False, True])
@pytest.mark.parametrize("bpm", [72.0, 103.4, 58.6])
def test_badge_digits_read_back_with_the_widgets_font(
    bpm: float, through_vp8: bool
) -> None:
    config = BadgeConfig(sensor_id=SENSOR, x=16, y=16, width=220, height=64)
    overlay = SensorOverlay(OverlayConfig(widgets=[config]))
    overlay.feed([Scalar(SENSOR, "heartrate", bpm, START_MS)])
    image = pattern()
    overlay.draw(image, START_MS + 500)
    if through_vp8:
        image = vp8_round_trip(image)
    badge = overlay.widgets[0]
    assert isinstance(badge, ValueBadge)
    assert badge.read(image) == str(round(bpm))


def test_stale_badge_is_grey_and_shows_its_age() -> None:
    config = BadgeConfig(sensor_id=SENSOR, x=0, y=0, width=220, height=64)
    overlay = SensorOverlay(OverlayConfig(widgets=[config]))
    overlay.feed([Scalar(SENSOR, "heartrate", 80.0, START_MS)])

    live = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    overlay.draw(live, START_MS + 1_000)
    stale = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    overlay.draw(stale, START_MS + 12_000)

    badge = overlay.widgets[0]
    assert isinstance(badge, ValueBadge)
    x, y = badge.digits_origin
    assert tuple(live[y, x + badge.scale * 2]) == (102, 255, 51)  # "#33ff66" in BGR
    assert tuple(stale[y, x + badge.scale * 2]) == (128, 128, 128)
    assert badge.read(stale) == "80"
    age_w, age_h = font.text_size("12s", 2)
    origin = (220 - 6 - age_w, 64 - 6 - age_h)
    assert font.read_text(stale, origin, 2, 3, alphabet="0123456789s") == "12s"


def test_badge_trend_follows_the_last_ten_seconds() -> None:
    badge = ValueBadge(BadgeConfig(sensor_id=SENSOR))
    overlay = SensorOverlay(OverlayConfig())
    rising = [
        Scalar(SENSOR, "heartrate", 70.0 + i, START_MS + i * 1000) for i in range(8)
    ]
    overlay.feed(rising)
    assert badge.trend(overlay.history, START_MS + 7000, 77.0) == 1
    overlay.feed([Scalar(SENSOR, "heartrate", 70.0, START_MS + 8000)])
    assert badge.trend(overlay.history, START_MS + 8000, 70.0) == 0
    overlay.feed([Scalar(SENSOR, "heartrate", 60.0, START_MS + 9000)])
    assert badge.trend(overlay.history, START_MS + 9000, 60.0) == -1


def test_badge_without_data_shows_dashes() -> None:
    badge = ValueBadge(BadgeConfig(sensor_id=SENSOR, x=0, y=0))
    overlay = SensorOverlay(OverlayConfig(widgets=[badge.config]))
    image = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    overlay.draw(image, START_MS)
    assert badge.read(image) == "--"


# -- sparkline, label, config -----------------------------------------------------


def test_sparkline_spans_its_box() -> None:
    config = SparklineConfig(sensor_id=SENSOR, x=0, y=0, width=160, height=40)
    overlay = SensorOverlay(OverlayConfig(widgets=[config]))
    t = np.arange(0, 30_000, 40)
    overlay.feed(
        [
            Waveform(
                SENSOR,
                "respiration",
                tuple(np.sin(2 * np.pi * t / 4000).tolist()),
                tuple((START_MS + t).tolist()),
            )
        ]
    )
    image = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    overlay.draw(image, START_MS + 30_000)
    ink = np.argwhere((image[:40, :160] == (102, 255, 51)).all(axis=2))
    # The full breathing range fills the inner box, 6 px from each edge.
    assert ink[:, 0].min() == 6 and ink[:, 0].max() == 34
    assert ink[:, 1].min() == 6 and ink[:, 1].max() >= 150


def test_label_draws_text() -> None:
    overlay = SensorOverlay(
        OverlayConfig(widgets=[LabelConfig(text="coach view", x=0, y=0, width=160)])
    )
    image = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    overlay.draw(image, 0)
    assert (image[:28, :160].max(axis=2) > 200).sum() > 50
    assert image[28:].max() == 0


def test_config_parses_widgets_by_kind_and_checks_colours() -> None:
    config = OverlayConfig.model_validate(
        {
            "widgets": [
                {"kind": "badge", "sensor_id": SENSOR, "colour": "#ff0000"},
                {"kind": "waveform", "sensor_id": SENSOR, "attribute_id": "ecg"},
                {"kind": "label", "text": "hi"},
            ]
        }
    )
    assert [type(w).__name__ for w in config.widgets] == [
        "BadgeConfig",
        "WaveformConfig",
        "LabelConfig",
    ]
    with pytest.raises(ValidationError):
        BadgeConfig(sensor_id=SENSOR, colour="red")
    with pytest.raises(ValidationError):
        OverlayConfig.model_validate({"widgets": [{"kind": "dial"}]})


def test_age_format() -> None:
    assert [format_age(ms) for ms in (400, 12_000, 300_000, 7_300_000)] == [
        "0s",
        "12s",
        "5m",
        "2h",
    ]


def test_pattern_track_runs_the_overlay_hook() -> None:
    overlay = SensorOverlay(
        OverlayConfig(widgets=[BadgeConfig(sensor_id=SENSOR, x=16, y=16, width=220)])
    )
    overlay.feed([Scalar(SENSOR, "heartrate", 64.0, START_MS)])
    calls: list[float] = []

    def hook(image: np.ndarray, wall_clock: float) -> None:
        calls.append(wall_clock)
        overlay.draw(image, START_MS + 100)

    track = PatternTrack("bot", WIDTH, HEIGHT, 30, overlay=hook)
    frame = track._frame(0)
    image = frame.to_ndarray(format="bgr24")
    badge = overlay.widgets[0]
    assert isinstance(badge, ValueBadge)
    assert len(calls) == 1
    assert badge.read(image) == "64"


def test_unknown_sensor_data_is_kept_and_ignored_by_widgets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    overlay = SensorOverlay(OverlayConfig.vitals(SENSOR))
    overlay.feed([Scalar("other", "heartrate", 99.0, START_MS)])
    image = pattern()
    with caplog.at_level(logging.WARNING):
        overlay.draw(image, START_MS)
    assert overlay.history.latest("other", "heartrate") == (START_MS, 99.0)
    badge = overlay.widgets[0]
    assert isinstance(badge, ValueBadge)
    assert badge.read(image) == "--"
