"""A recording bot records two publishing bots on the reference server."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import pytest

from callbot.server.app import ReferenceServer
from callbot.server.settings import ServerSettings

pytestmark = pytest.mark.integration

CALL_SECONDS = 20.0


class Worker:
    """``python -m callbot.bot.worker`` and the reports it writes."""

    def __init__(self, config: dict[str, Any], log: Path) -> None:
        self.config = config
        self.log = log
        self.reports: list[dict[str, Any]] = []
        self.process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self.on_report: Callable[[dict[str, Any]], None] | None = None

    async def start(self) -> Worker:
        self._log_file = self.log.open("wb")
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "callbot.bot.worker",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=self._log_file,
            env={**os.environ, "CALLBOT_LOG_LEVEL": "INFO"},
        )
        self._send(self.config)
        self._reader = asyncio.create_task(self._read())
        return self

    def _send(self, message: dict[str, Any]) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write((json.dumps(message) + "\n").encode())

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        async for line in self.process.stdout:
            report = json.loads(line)
            self.reports.append(report)
            if self.on_report is not None:
                self.on_report(report)

    @property
    def stats(self) -> dict[str, Any]:
        found = [r for r in self.reports if r.get("type") == "stats"]
        return found[-1] if found else {}

    def inbound_frames(self, user_id: str) -> int:
        return sum(
            t.get("frames", 0)
            for t in self.stats.get("tracks", [])
            if t.get("direction") == "inbound"
            and t.get("kind") == "video"
            and t.get("from_user_id") == user_id
        )

    async def wait_for(self, condition: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"timed out; last {self.stats}"
            await asyncio.sleep(0.1)

    async def leave(self) -> int:
        assert self.process is not None
        self._send({"cmd": "leave"})
        code = await asyncio.wait_for(self.process.wait(), 15)
        assert self._reader is not None
        await self._reader
        return code

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        self._log_file.close()


async def _first_frame_time(directory: Path, tracks: int = 4) -> float:
    """Wall time of the first frame any track file got, from the live manifest."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for path in directory.glob("*/manifest.json"):
            manifest = json.loads(path.read_text())
            starts = [t["start"] for t in manifest["tracks"] if t["start"] is not None]
            if len(starts) == tracks:
                return float(manifest["started_at"]) + min(starts)
        await asyncio.sleep(0.1)
    raise AssertionError(f"not all {tracks} tracks started recording")


def _bot(url: str, user_id: str, **config: Any) -> dict[str, Any]:
    return {
        "server_url": url,
        "room_id": "lobby",
        "user_id": user_id,
        "bot_id": user_id,
        **config,
    }


async def test_recorder_records_two_publishers(tmp_path: Path) -> None:
    recordings = tmp_path / "recordings"
    async with ReferenceServer(ServerSettings(port=0)) as server:
        recorder = Worker(
            _bot(
                server.url,
                "rec",
                video=False,
                audio=False,
                plugins=[
                    {"name": "recorder", "config": {"directory": str(recordings)}}
                ],
            ),
            tmp_path / "rec.log",
        )
        publishers = [
            Worker(
                _bot(server.url, u, width=320, height=240, fps=30),
                tmp_path / f"{u}.log",
            )
            for u in ("alice", "bob")
        ]
        workers = [recorder, *publishers]
        final_files: dict[str, float | None] = {}
        sent: dict[str, int] = {}

        def on_recorder_report(report: dict[str, Any]) -> None:
            # Read the files the moment the bot says it left.
            if report.get("status") == "left":
                for path in recordings.glob("*/*.webm"):
                    with av.open(str(path)) as container:
                        final_files[path.name] = container.duration

        recorder.on_report = on_recorder_report
        try:
            await recorder.start()
            await recorder.wait_for(lambda: recorder.stats.get("endpoint_id"), 15)
            for publisher in publishers:
                await publisher.start()
            await recorder.wait_for(
                lambda: all(recorder.inbound_frames(u) > 0 for u in ("alice", "bob")),
                20,
            )
            # Adaptive quality off: every publisher sends at its full 30 fps.
            call = server.call("lobby")
            assert call is not None
            call.set_adaptive_quality(False)
            # The call lasts CALL_SECONDS from the first recorded frame on.
            first = await _first_frame_time(recordings)
            await asyncio.sleep(first + CALL_SECONDS - time.time())
            # What each publisher sent, as the server received it.
            for user_id in ("alice", "bob"):
                endpoint_id = call.endpoint_of(user_id)
                assert endpoint_id is not None
                published = call.engine.endpoint_stats(endpoint_id)["published"]
                sent[user_id] = sum(
                    t["frames"] for t in published.values() if t["kind"] == "video"
                )
            codes = await asyncio.gather(*(p.leave() for p in publishers))
            assert codes == [0, 0]
            await asyncio.sleep(1.0)
            recorder_leaves = time.time()
            assert await recorder.leave() == 0
        finally:
            for worker in workers:
                await worker.kill()

    (directory,) = recordings.iterdir()
    manifest = json.loads((directory / "manifest.json").read_text())
    tracks = manifest["tracks"]
    assert sorted((t["user_id"], t["kind"]) for t in tracks) == [
        ("alice", "audio"),
        ("alice", "video"),
        ("bob", "audio"),
        ("bob", "video"),
    ]
    assert {p["user_id"] for p in manifest["participants"]} == {"alice", "bob"}
    for track in tracks:
        path = directory / track["file"]
        # finalised (duration in the header) before the bot reported left
        assert final_files[path.name] is not None
        assert track["closed"]
        # closed when its publisher left, not when the recording ended
        assert manifest["started_at"] + track["end"] < recorder_leaves - 0.5
        assert 0 <= track["start"] < 15
        with av.open(str(path)) as container:
            stream = container.streams[0]
            assert stream.codec_context.name == (
                "vp8" if track["kind"] == "video" else "opus"
            )
            duration = container.duration / 1e6
            print(f"{track['file']}: {duration:.2f} s from {track['start']:.2f} s")
            assert duration == pytest.approx(CALL_SECONDS, abs=1.0), track
            frames = sum(1 for _ in container.decode(stream))
        if track["kind"] == "video":
            expected = sent[track["user_id"]]
            print(f"{track['user_id']}: {frames} frames recorded of {expected} sent")
            assert frames == pytest.approx(expected, rel=0.05)


async def test_recording_survives_sigkill_of_its_bot(tmp_path: Path) -> None:
    recordings = tmp_path / "recordings"
    async with ReferenceServer(ServerSettings(port=0)) as server:
        recorder = Worker(
            _bot(
                server.url,
                "rec",
                video=False,
                audio=False,
                plugins=[
                    {"name": "recorder", "config": {"directory": str(recordings)}}
                ],
            ),
            tmp_path / "rec.log",
        )
        publisher = Worker(
            _bot(server.url, "alice", width=320, height=240), tmp_path / "alice.log"
        )
        try:
            # The publisher is in the call before the recorder joins.
            await publisher.start()
            await publisher.wait_for(lambda: publisher.stats.get("endpoint_id"), 15)
            await recorder.start()
            first = await _first_frame_time(recordings, tracks=2)
            await asyncio.sleep(first + 8.0 - time.time())
            killed_at = time.time()
            await recorder.kill()
        finally:
            await publisher.kill()
            await recorder.kill()

    (directory,) = recordings.iterdir()
    manifest = json.loads((directory / "manifest.json").read_text())
    assert len(manifest["tracks"]) == 2
    (participant,) = manifest["participants"]
    assert participant["user_id"] == "alice"
    assert participant["endpoint_id"].startswith("alice_")
    for track in manifest["tracks"]:
        assert not track["closed"]
        recorded_until = killed_at - (manifest["started_at"] + track["start"])
        with av.open(str(directory / track["file"])) as container:
            stream = container.streams[0]
            frames = list(container.decode(stream))
        last = float(frames[-1].time or 0.0)
        print(f"{track['file']}: media up to {last:.2f} s of {recorded_until:.2f} s")
        assert recorded_until - 2.0 <= last <= recorded_until + 0.1
