"""The worked example of docs/plugins.md runs in a real call and logs what it saw."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from callbot.bot.bot import Bot
from callbot.bot.config import BotConfig, PluginSpec
from callbot.server.app import ReferenceServer
from callbot.server.settings import ServerSettings
from tests.worker_bots import WorkerBot

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "speaker-log"
SPEECH = Path(__file__).resolve().parent / "data" / "speech-en-us-16k.wav"

pytestmark = pytest.mark.integration


@pytest.fixture
def speaker_log_class() -> type:
    sys.path.insert(0, str(EXAMPLE))
    try:
        from speaker_log import SpeakerLog

        return SpeakerLog
    finally:
        sys.path.remove(str(EXAMPLE))


async def test_speaker_log_records_joins_speech_and_tracks_with_frames(
    tmp_path: Path, speaker_log_class: type
) -> None:
    log_file = tmp_path / "speakers.jsonl"
    async with ReferenceServer(ServerSettings(port=0)) as server:
        speaker = await WorkerBot(
            server.url,
            "lobby",
            "alice",
            audio_file=str(SPEECH),
            audio_file_loop=False,
        ).start()
        try:
            config = BotConfig(
                server_url=server.url,
                room_id="lobby",
                user_id="logger",
                video=False,
                audio=False,
                plugins=[
                    PluginSpec(name="speaker-log", config={"path": str(log_file)})
                ],
            )
            bot = Bot(config, plugin_registry={"speaker-log": speaker_log_class})
            run = asyncio.create_task(bot.run())

            def lines() -> list[dict[str, object]]:
                if not log_file.exists():
                    return []
                return [json.loads(line) for line in log_file.read_text().splitlines()]

            for _ in range(200):
                if any(
                    e["event"] == "speaking" and e["speaking"] is True for e in lines()
                ):
                    break
                await asyncio.sleep(0.1)
            # Long enough for a few frames of the viewer tier's 5 fps video.
            await asyncio.sleep(2.0)
            bot.leave()
            await asyncio.wait_for(run, 10)
        finally:
            await speaker.leave()

    events = lines()
    assert events[0]["event"] == "joined"
    assert {"event": "participant_joined", "user_id": "alice"}.items() <= next(
        e for e in events if e["event"] == "participant_joined"
    ).items()
    assert sorted(e["kind"] for e in events if e["event"] == "track_added") == [
        "audio",
        "video",
    ]
    assert any(e["event"] == "speaking" and e["user_id"] == "alice" for e in events)
    counted = [
        e for e in events if e["event"] in ("track_ended", "track_open_at_leave")
    ]
    assert len(counted) == 2 and all(int(e["frames"]) > 5 for e in counted)  # type: ignore[call-overload]
    assert events[-1]["event"] == "left"
