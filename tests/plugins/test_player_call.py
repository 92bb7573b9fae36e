"""A player bot publishes a VP8 file on the reference server, unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

from callbot.server.app import ReferenceServer
from callbot.server.settings import ServerSettings
from tests.media.test_file_video import _vp8_webm
from tests.plugins.test_recorder_call import Worker, _bot

pytestmark = pytest.mark.integration


async def test_participant_sees_the_played_file(tmp_path: Path) -> None:
    clip = tmp_path / "clip.webm"
    _vp8_webm(clip, count=60)
    async with ReferenceServer(ServerSettings(port=0)) as server:
        player = Worker(
            _bot(
                server.url,
                "player",
                plugins=[{"name": "player", "config": {"file": str(clip)}}],
            ),
            tmp_path / "player.log",
        )
        alice = Worker(
            _bot(server.url, "alice", video=False, audio=False),
            tmp_path / "alice.log",
        )
        try:
            await player.start()
            await player.wait_for(lambda: player.stats.get("endpoint_id"), 15)
            await alice.start()
            # 60 frames: the 2 s clip has looped at least once.
            await alice.wait_for(lambda: alice.inbound_frames("player") >= 60, 25)
            (video,) = [
                t
                for t in alice.stats["tracks"]
                if t["direction"] == "inbound" and t["kind"] == "video"
            ]
            assert (video["width"], video["height"]) == (320, 240)
            call = server.call("lobby")
            assert call is not None
            endpoint_id = call.endpoint_of("player")
            assert endpoint_id is not None
            published = call.engine.endpoint_stats(endpoint_id)["published"]
            (sent,) = [t for t in published.values() if t["kind"] == "video"]
            # the file's keyframes (one a second), not an encoder's
            assert sent["frames"] >= 60
            assert sent["keyframes"] == pytest.approx(sent["frames"] / 30, abs=1.5)
            assert await player.leave() == 0
            assert await alice.leave() == 0
        finally:
            await player.kill()
            await alice.kill()
