"""An echo bot on the reference server sends a publisher's media back to it."""

from __future__ import annotations

from pathlib import Path

import pytest

from callbot.server.app import ReferenceServer
from callbot.server.settings import ServerSettings
from tests.plugins.test_recorder_call import Worker, _bot

pytestmark = pytest.mark.integration


async def test_publisher_gets_its_own_media_back_from_the_echo(
    tmp_path: Path,
) -> None:
    async with ReferenceServer(ServerSettings(port=0)) as server:
        echo = Worker(
            _bot(server.url, "echo", plugins=[{"name": "echo"}]),
            tmp_path / "echo.log",
        )
        alice = Worker(
            _bot(server.url, "alice", width=320, height=240), tmp_path / "alice.log"
        )
        try:
            await echo.start()
            await echo.wait_for(lambda: echo.stats.get("endpoint_id"), 15)
            await alice.start()
            await alice.wait_for(lambda: alice.inbound_frames("echo") >= 30, 25)
            video = [
                t
                for t in alice.stats["tracks"]
                if t["direction"] == "inbound" and t["from_user_id"] == "echo"
            ]
            assert {t["kind"] for t in video} == {"audio", "video"}
            (echoed,) = [t for t in video if t["kind"] == "video"]
            assert (echoed["width"], echoed["height"]) == (320, 240)
            assert await echo.leave() == 0
            assert await alice.leave() == 0
        finally:
            await echo.kill()
            await alice.kill()
