"""QA on the reference server: a publisher at 30 fps measured by a QA bot.

Each test starts the reference server in process, a publishing bot and a QA
bot (the ``qa`` plugin) as worker processes, optionally impairs the
publisher's video at the server's relay, and reads the QA bot's report.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from callbot.server.app import ReferenceServer
from callbot.server.network_conditions import NetworkConditions
from callbot.server.settings import RoomConfig, ServerSettings
from tests.worker_bots import WorkerBot, stop_bots

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

ROOM = "qa-room"


@pytest.fixture
async def server() -> AsyncIterator[ReferenceServer]:
    settings = ServerSettings(port=0, admin_port=0, rooms=[RoomConfig(name=ROOM)])
    async with ReferenceServer(settings) as server:
        yield server


async def until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout} s")
        await asyncio.sleep(0.1)


async def publisher(server: ReferenceServer) -> tuple[WorkerBot, str]:
    """A publishing bot, active (adaptive quality off): its video track id."""
    pub = await WorkerBot(server.url, ROOM, "pub").start()
    await pub.wait_for(lambda: pub.status == "in_call", 15, "in_call")
    await until(
        lambda: len(server.published_tracks(ROOM, "pub")) == 2, 15, "published tracks"
    )
    server.set_adaptive_quality(ROOM, False)
    tracks = server.published_tracks(ROOM, "pub")
    (video,) = [t for t, kind in tracks.items() if kind == "video"]
    return pub, video


async def qa_bot(server: ReferenceServer, out: Path) -> WorkerBot:
    qa = WorkerBot(
        server.url,
        ROOM,
        "qa",
        video=False,
        plugins=[{"name": "qa", "config": {"out": str(out)}}],
    )
    await qa.start()
    await qa.wait_for(lambda: qa.video_frames("pub") >= 30, 20, "video from pub")
    return qa


async def finish(qa: WorkerBot, out: Path) -> dict[str, Any]:
    code = await qa.leave(15)
    assert code == 0, "\n".join(qa.stderr[-20:])
    (verdict,) = qa.events("qa_verdict")
    report: dict[str, Any] = json.loads((out / "report.json").read_text())
    assert verdict["passed"] is report["passed"]
    return report


def track_of(report: dict[str, Any], kind: str) -> dict[str, Any]:
    (track,) = [
        t for t in report["tracks"] if t["kind"] == kind and t["user_id"] == "pub"
    ]
    return track


def check(report: dict[str, Any], name: str, kind: str = "video") -> dict[str, Any]:
    (found,) = [
        c
        for c in report["checks"]
        if c["name"] == name and c["subject"].startswith(f"{kind} track")
    ]
    return found


async def test_a_clean_call_passes_with_loopback_latency_under_300_ms(
    server: ReferenceServer, tmp_path: Path
) -> None:
    pub, _video = await publisher(server)
    bots = [pub]
    try:
        qa = await qa_bot(server, tmp_path)
        bots.append(qa)
        await asyncio.sleep(10)
        report = await finish(qa, tmp_path)
    finally:
        await stop_bots(bots)

    assert report["passed"] is True, [c for c in report["checks"] if not c["passed"]]
    video = track_of(report, "video")
    assert video["pattern"] is True
    assert video["fps"]["mean"] >= 25
    # A stall of the shared 2-core machine may show as one short freeze.
    assert video["freezes"]["total_seconds"] < 0.5
    assert video["skipped_frames"] <= 0.02 * video["frames"]
    assert video["resolution_changes"] == 0
    assert video["sizes"][0]["width"] == 640
    # Glass-to-glass on loopback, one machine's clock at both ends.
    latency = video["latency_ms"]["median"]
    assert 0 < latency < 300
    assert video["wire"]["wire_loss"] == 0.0
    audio = track_of(report, "audio")
    assert audio["beeps"] >= 8
    assert 0 < audio["latency_ms"]["median"] < 300
    (person,) = [p for p in report["participants"] if p["user_id"] == "pub"]
    assert person["av_offset_ms"] is not None and abs(person["av_offset_ms"]) < 150
    assert person["mos"]["mos"] > 4.0
    assert [t["tier"] for t in person["tiers"]][-1:] in ([], ["active"])
    html = (tmp_path / "report.html").read_text()
    assert html.count("<svg") >= 5 and "PASS" in html
    suite = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "0"
    print(
        f"QA latency on loopback: video {latency} ms, audio "
        f"{audio['latency_ms']['median']} ms, A/V offset {person['av_offset_ms']} ms"
    )


async def test_a_2_s_pause_is_one_freeze_and_fails_the_freeze_threshold(
    server: ReferenceServer, tmp_path: Path
) -> None:
    pub, video_id = await publisher(server)
    bots = [pub]
    try:
        qa = await qa_bot(server, tmp_path)
        bots.append(qa)
        await asyncio.sleep(2)
        # Through the admin HTTP, as a QA run against a separate server would.
        async with httpx.AsyncClient(base_url=str(server.admin_url)) as admin:
            listed = await admin.get(f"/rooms/{ROOM}/users/pub/tracks")
            assert listed.json()["tracks"][video_id] == "video"
            reply = await admin.post(
                f"/rooms/{ROOM}/tracks/{video_id}/network_conditions",
                json={"pause_ms": 2000},
            )
        assert reply.status_code == 200 and reply.json()["subscribers"] == 1
        await asyncio.sleep(5)
        report = await finish(qa, tmp_path)
    finally:
        await stop_bots(bots)

    video = track_of(report, "video")
    assert video["freezes"]["count"] == 1
    assert video["freezes"]["total_seconds"] == pytest.approx(2.0, abs=0.25)
    freeze = check(report, "freeze time")
    assert freeze["passed"] is False
    assert report["passed"] is False
    suite = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite")
    assert suite is not None and int(suite.get("failures") or 0) >= 1


async def test_5_percent_loss_is_5_percent_wire_loss_and_delay_adds_latency(
    server: ReferenceServer, tmp_path: Path
) -> None:
    pub, video_id = await publisher(server)
    bots = [pub]
    try:
        # Set before the QA bot subscribes: it applies from its first packet.
        # A seed whose running share stays within 0.6 points of 5 % from the
        # 300th draw on, so the figure tests the measurement, not the dice.
        server.network.rng = random.Random(176)
        server.set_network_conditions(
            ROOM, video_id, NetworkConditions(loss=0.05, delay_ms=100)
        )
        qa = await qa_bot(server, tmp_path)
        bots.append(qa)
        await asyncio.sleep(8)
        report = await finish(qa, tmp_path)
    finally:
        await stop_bots(bots)

    video = track_of(report, "video")
    wire = video["wire"]
    assert wire["packets_expected"] > 500
    assert wire["wire_loss"] == pytest.approx(0.05, abs=0.015)
    # NACK and RTX repair most of it; what is left is reported apart.
    assert wire["loss"] < wire["wire_loss"]
    assert track_of(report, "audio")["wire"]["wire_loss"] == 0.0
    # The 100 ms delay shows in the glass-to-glass latency (about 70 ms clean).
    assert 150 <= video["latency_ms"]["median"] <= 400
