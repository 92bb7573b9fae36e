"""A transcoding bot composites two publishing bots on the reference server.

The same bot records, and its recording is transcoded afterwards with
``callbot transcode``, so the live and the offline composite are checked on
one call.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from callbot.cli import main
from callbot.server.app import ReferenceServer
from callbot.server.settings import ServerSettings
from media.compositor import grid_cells
from tests.media.composite_checks import (
    cell_colour,
    close_to,
    frame_at,
    is_fast_start,
    playlist_segments,
    streams,
)
from tests.worker_bots import WorkerBot, stop_bots

pytestmark = pytest.mark.integration

# Each publisher's solid colour, as #rrggbb for the bot and BGR in the frame.
COLOURS = {"alice": ("#dc1e1e", (30, 30, 220)), "bob": ("#1e1edc", (220, 30, 30))}
IN_CALL = 8.0


def _status_ts(bot: WorkerBot, status: str) -> float:
    return next(
        float(r["ts"])
        for r in bot.reports
        if r.get("type") == "status" and r.get("status") == status
    )


@pytest.mark.timeout(60)
async def test_transcoder_composites_the_call_live_and_from_its_recording(
    tmp_path: Path,
) -> None:
    settings = {"directory": str(tmp_path / "transcodes"), "width": 640}
    settings["height"] = 360
    async with ReferenceServer(ServerSettings(port=0)) as server:
        composer = WorkerBot(
            server.url,
            "lobby",
            "composer",
            video=False,
            audio=False,
            plugins=[
                {"name": "transcoder", "config": settings},
                {"name": "recorder", "config": {"directory": str(tmp_path / "rec")}},
            ],
        )
        publishers = [
            WorkerBot(
                server.url,
                "lobby",
                user_id,
                width=320,
                height=240,
                fps=15,
                video_colour=colour,
            )
            for user_id, (colour, _) in COLOURS.items()
        ]
        bots = [composer, *publishers]
        try:
            await composer.start()
            await composer.wait_for(lambda: composer.status == "in_call", 15, "join")
            # One after the other, so that the grid's order is known.
            for publisher in publishers:
                await publisher.start()
                await composer.wait_for(
                    lambda p=publisher: composer.video_frames(p.user_id) > 0,
                    20,
                    f"video of {publisher.user_id}",
                )
            server.set_adaptive_quality("lobby", False)
            await asyncio.sleep(IN_CALL)
            # While the call runs: HLS segments to play, the MP4 being written
            # (in the muxer's chunks; solid colours compress to little).
            (live_playlist,) = (tmp_path / "transcodes").glob("*/hls/index.m3u8")
            live_segments = playlist_segments(live_playlist)
            assert len(live_segments) >= 2
            assert sorted(streams(live_segments[0])[0]) == ["aac", "h264"]
            (live_mp4,) = (tmp_path / "transcodes").glob("*/composite.mp4")
            assert live_mp4.stat().st_size > 0
            assert await composer.leave(15) == 0
        finally:
            await stop_bots(bots)

    (done,) = composer.events("transcoded")
    call_seconds = _status_ts(composer, "left") - _status_ts(composer, "in_call")
    mp4, playlist = Path(done["mp4"]), Path(done["hls"])
    print(
        f"composite {done['duration']:.2f} s of a {call_seconds:.2f} s call, "
        f"{done['frames']} frames, {done['dropped']} dropped, "
        f"real-time factor {done['real_time_factor']:.2f}"
    )

    names, duration = streams(mp4)
    assert sorted(names) == ["aac", "h264"]
    assert abs(duration - call_seconds) <= 1.0
    assert is_fast_start(mp4)
    middle = frame_at(mp4, duration / 2)
    cells = grid_cells(2, 640, 360)
    for cell, (_, bgr) in zip(cells, COLOURS.values(), strict=True):
        assert close_to(cell_colour(middle, cell), bgr), cell_colour(middle, cell)

    segments = playlist_segments(playlist)
    assert len(segments) >= 3
    for segment in segments:
        assert sorted(streams(segment)[0]) == ["aac", "h264"]

    # The same call, offline, from the recorder's manifest.
    (manifest,) = (tmp_path / "rec").glob("*/manifest.json")
    offline = tmp_path / "offline.mp4"
    size = ["--width", "640", "--height", "360"]
    assert main(["transcode", str(manifest), str(offline), *size]) == 0
    names, offline_duration = streams(offline)
    assert sorted(names) == ["aac", "h264"]
    assert abs(offline_duration - call_seconds) <= 1.0
    middle = frame_at(offline, offline_duration / 2)
    for cell, (_, bgr) in zip(cells, COLOURS.values(), strict=True):
        assert close_to(cell_colour(middle, cell), bgr), cell_colour(middle, cell)
