"""The transcoder plugin's hooks, driven as the bot drives them."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import av
import cv2
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
from media.compositor import grid_cells
from plugins.transcoder import Transcoder, TranscoderConfig
from tests.media.composite_checks import cell_colour, close_to, frame_at, streams

RED, GREEN = (0, 0, 220), (0, 200, 0)


def test_config_is_validated_by_name() -> None:
    cls, config = validate_spec(PluginSpec(name="transcoder", config={"fps": 10}))
    assert cls is Transcoder and isinstance(config, TranscoderConfig)
    with pytest.raises(PluginError, match="width"):
        validate_spec(PluginSpec(name="transcoder", config={"width": 641}))


@pytest.mark.integration
async def test_stalled_video_is_replaced_by_the_snapshot(tmp_path: Path) -> None:
    """Runs the composite's thread on the wall clock for about 3 s."""
    reports: list[dict[str, Any]] = []
    context = PluginContext(
        "composer", "lobby", "composer", logging.getLogger("test"), reports.append
    )
    config = TranscoderConfig(
        directory=str(tmp_path), width=320, height=180, fps=10, stall_seconds=0.5
    )
    plugin = Transcoder(config, context)
    plugin.on_joined("composer_1")
    plugin.on_participant_joined("alice", "alice_2", "Alice")
    plugin.on_participant_joined("bob", "bob_3", None)
    video = RemoteTrack(RemoteTrackInfo("v1", "video", "alice_2", "alice", "1"))
    audio = RemoteTrack(RemoteTrackInfo("a1", "audio", "bob_3", "bob", "2"))
    plugin.on_track_added(video)
    plugin.on_track_added(audio)

    red = av.VideoFrame.from_ndarray(np.full((240, 320, 3), RED, np.uint8), "bgr24")
    tone = np.repeat((np.sin(np.arange(960) / 8) * 6000).astype(np.int16), 2)
    for _ in range(50):  # 1 s of red video and bob's tone, then alice stalls
        video.deliver_decoded(red.reformat(format="yuv420p"))
        frame = av.AudioFrame.from_ndarray(tone.reshape(1, -1), "s16", "stereo")
        frame.sample_rate = 48000
        audio.deliver_decoded(frame)
        await asyncio.sleep(0.02)
    ok, jpeg = cv2.imencode(".jpg", np.full((180, 320, 3), GREEN, np.uint8))
    assert ok
    plugin.on_snapshot("alice", jpeg.tobytes(), 320, 180, 0.0)
    plugin.on_speaking("bob", True)
    await asyncio.sleep(1.5)
    await plugin.on_leaving()

    (done,) = [r for r in reports if r.get("event") == "transcoded"]
    mp4 = Path(done["mp4"])
    names, duration = streams(mp4)
    assert sorted(names) == ["aac", "h264"]
    assert abs(duration - done["duration"]) < 0.2 and 2.0 < duration < 4.0
    cells = grid_cells(2, 320, 180)
    assert close_to(cell_colour(frame_at(mp4, 0.5), cells[0]), RED)
    b, g, r = cell_colour(frame_at(mp4, duration - 0.3), cells[0])
    assert g > r + 40 and g > b + 40, (b, g, r)
    # bob is audio only: his card, with the speaking border at the end
    b, g, r = frame_at(mp4, duration - 0.3)[cells[1].y + 1, cells[1].centre[0]]
    assert g > 150 and r < 150
    assert Path(done["hls"]).exists()
