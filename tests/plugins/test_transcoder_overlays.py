"""The transcoder's sensor overlays: config, and vitals on a participant's tile."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from callbot.bot.config import PluginSpec
from callbot.bot.plugin import (
    PluginContext,
    PluginError,
    RemoteTrack,
    RemoteTrackInfo,
    validate_spec,
)
from callbot.sensors.measurements import Measurement, Scalar, Waveform
from callbot.sensors.synthetic import SyntheticConfig, SyntheticSensor
from media.compositor import Rect
from media.overlays.config import BadgeConfig, LabelConfig, WaveformConfig
from media.overlays.tile import tile_vitals
from media.overlays.widgets import ValueBadge, WaveformStrip
from plugins.transcoder import Transcoder, TranscoderConfig

SENSOR = "hr-1"
RED, BLUE = (0, 0, 200), (200, 60, 0)


def test_a_tile_overlay_maps_a_sensor_to_a_participant() -> None:
    _, config = validate_spec(
        PluginSpec(
            name="transcoder",
            config={
                "tile_overlays": [
                    {
                        "user_id": "alice",
                        "sensor_id": "hr-1",
                        "overlay": {
                            "widgets": [
                                {"kind": "badge", "x": 8, "y": 8},
                                {"kind": "waveform", "sensor_id": "ecg-2"},
                                {"kind": "label", "text": "Alice"},
                            ]
                        },
                    },
                    {"user_id": "bob", "sensor_id": "polar-7"},
                ]
            },
        )
    )
    assert isinstance(config, TranscoderConfig)
    alice, bob = config.tile_overlays
    badge, waveform, label = alice.overlay_config().widgets
    # A widget without a sensor shows the mapped one; others keep theirs.
    assert isinstance(badge, BadgeConfig) and badge.sensor_id == "hr-1"
    assert isinstance(waveform, WaveformConfig) and waveform.sensor_id == "ecg-2"
    assert isinstance(label, LabelConfig) and label.text == "Alice"
    # Without an overlay, the tile shows the sensor's vitals.
    assert bob.overlay_config() == tile_vitals("polar-7")


@pytest.mark.parametrize(
    ("overlays", "problem"),
    [
        (
            [{"user_id": "a", "sensor_id": "s"}, {"user_id": "a", "sensor_id": "t"}],
            "more than one tile overlay for a",
        ),
        ([{"user_id": "a"}], "sensor_id"),
        (
            [{"user_id": "a", "sensor_id": "s", "overlay": {"widgets": [{}]}}],
            "kind",
        ),
        (
            [
                {
                    "user_id": "a",
                    "sensor_id": "s",
                    "overlay": {"widgets": [{"kind": "badge", "colour": "red"}]},
                }
            ],
            "colour",
        ),
    ],
)
def test_bad_tile_overlays_are_refused_before_the_bot_starts(
    overlays: list[dict[str, Any]], problem: str
) -> None:
    spec = PluginSpec(name="transcoder", config={"tile_overlays": overlays})
    with pytest.raises(PluginError, match=problem):
        validate_spec(spec)


def solid(bgr: tuple[int, int, int]) -> av.VideoFrame:
    image = np.full((360, 640, 3), bgr, np.uint8)
    return av.VideoFrame.from_ndarray(image, format="bgr24").reformat(format="yuv420p")


def tile_of(image: np.ndarray, area: Rect) -> np.ndarray:  # type: ignore[type-arg]
    return image[area.y : area.y + area.height, area.x : area.x + area.width]


@pytest.mark.integration
async def test_vitals_fed_by_the_bot_show_on_their_participants_tile(
    tmp_path: Path,
) -> None:
    """Runs the composite's thread on the wall clock for about 2.5 s."""
    reports: list[dict[str, Any]] = []
    context = PluginContext(
        "composer", "lobby", "composer", logging.getLogger("test"), reports.append
    )
    config = TranscoderConfig.model_validate(
        {
            "directory": str(tmp_path),
            "fps": 10,
            "hls": False,
            "tile_overlays": [{"user_id": "alice", "sensor_id": SENSOR}],
        }
    )
    plugin = Transcoder(config, context)
    plugin.on_joined("composer_1")
    tracks = {}
    for user_id in ("alice", "bob"):
        plugin.on_participant_joined(user_id, f"{user_id}_1", user_id.title())
        track = RemoteTrack(RemoteTrackInfo(user_id, "video", None, user_id, None))
        plugin.on_track_added(track)
        tracks[user_id] = track

    # The bot's sensor feed, as a local synthetic source hands it over.
    sensor = SyntheticSensor(
        SyntheticConfig(sensor_id=SENSOR, seed=2), int(time.time() * 1000) - 5_000
    )
    fed: list[Measurement] = []
    started = time.monotonic()
    while time.monotonic() - started < 2.5:
        batch = sensor.advance(int(time.time() * 1000))
        fed.extend(batch)
        plugin.on_measurements(batch)
        tracks["alice"].deliver_decoded(solid(RED))
        tracks["bob"].deliver_decoded(solid(BLUE))
        await asyncio.sleep(0.05)
    await plugin.on_leaving()

    (done,) = [r for r in reports if r.get("event") == "transcoded"]
    assert done["error"] is None
    with av.open(done["mp4"]) as container:
        frames = [
            (float(f.time or 0.0), f.to_ndarray(format="bgr24"))
            for f in container.decode(video=0)
        ]
    seconds, image = frames[-5]
    now_ms = round((plugin.sensor_overlays["alice"].epoch + seconds) * 1000)
    areas = plugin.composite.compositor.areas
    alice, bob = tile_of(image, areas["alice"]), tile_of(image, areas["bob"])
    badge_config, _, strip_config = tile_vitals(SENSOR).widgets
    assert isinstance(badge_config, BadgeConfig)
    assert isinstance(strip_config, WaveformConfig)

    # The badge shows a heart rate the sensor reported in the frame's last
    # seconds (the feed races the composite by a batch).
    rates = {
        str(round(m.payload))
        for m in fed
        if isinstance(m, Scalar) and now_ms - 3_000 <= m.timestamp <= now_ms + 200
    }
    shown = ValueBadge(badge_config).read(alice)
    assert shown in rates, (shown, rates)

    # The ECG strip follows the samples fed, at the frame's time.
    strip = WaveformStrip(strip_config)
    ecg = [m for m in fed if isinstance(m, Waveform) and m.attribute_id == "ecg"]
    ts = np.array([t for m in ecg for t in m.timestamps], np.float64)
    values = np.array([v for m in ecg for v in m.payload], np.float64)
    trace = strip.read(alice)
    expected = strip.column_values(ts, values, now_ms)
    ok = ~np.isnan(trace)
    assert ok.mean() > 0.9
    assert float(np.corrcoef(trace[ok], expected[ok])[0, 1]) >= 0.9

    # Bob's tile is his picture alone: no panel, trace or digits on it.
    x, y = strip_config.x, strip_config.y
    region = bob[y : y + strip_config.height, x : x + strip_config.width]
    assert np.abs(region.astype(np.int16) - BLUE).max() < 40
    assert ValueBadge(badge_config).read(bob) == ""
