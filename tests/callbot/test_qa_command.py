"""``callbot qa`` against the reference server: exit code and the three reports."""

from __future__ import annotations

import asyncio
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from callbot.server.app import ReferenceServer
from callbot.server.settings import RoomConfig, ServerSettings
from tests.worker_bots import WorkerBot, stop_bots

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

ROOM = "qa-cli"


async def test_callbot_qa_exits_1_when_a_threshold_fails(tmp_path: Path) -> None:
    settings = ServerSettings(port=0, rooms=[RoomConfig(name=ROOM)])
    thresholds = tmp_path / "thresholds.json"
    # 100 fps cannot be met by a 30 fps publisher; everything else is lenient.
    thresholds.write_text(json.dumps({"min_fps": 100, "max_latency_ms": 1000}))
    out = tmp_path / "out"
    async with ReferenceServer(settings) as server:
        pub = await WorkerBot(server.url, ROOM, "pub").start()
        try:
            await pub.wait_for(lambda: pub.status == "in_call", 15, "in_call")
            server.set_adaptive_quality(ROOM, False)
            process = await asyncio.create_subprocess_exec(
                *[sys.executable, "-m", "callbot.cli", "--log-level", "WARNING"],
                *["qa", "--server", server.url, "--room", ROOM],
                *["--duration", "6", "--thresholds", str(thresholds)],
                *["--out", str(out)],
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            stdout, stderr = await asyncio.wait_for(process.communicate(), 40)
        finally:
            await stop_bots([pub])

    text = stdout.decode()
    assert process.returncode == 1, stderr.decode()[-2000:]
    assert "FAIL frame rate of video track" in text
    assert "qa: FAIL" in text
    report = json.loads((out / "report.json").read_text())
    assert report["passed"] is False
    assert report["thresholds"]["min_fps"] == 100
    (video,) = [t for t in report["tracks"] if t["kind"] == "video"]
    assert 20 <= video["fps"]["mean"] <= 35
    # The QA bot publishes the tone, so RTCP gives a round-trip time.
    assert report["rtt_ms"]["median"] is not None and report["rtt_ms"]["median"] < 100
    suite = ET.parse(out / "junit.xml").getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "1"
    assert "<svg" in (out / "report.html").read_text()


def test_callbot_qa_refuses_a_server_that_is_not_a_websocket_url(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from callbot import cli

    argv = ["qa", "--server", "http://127.0.0.1:4000/socket", "--room", ROOM]
    assert cli.main(argv) == 2
    assert "--server must be a ws:// or wss:// URL" in capsys.readouterr().err
