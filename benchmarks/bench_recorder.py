"""Recorder CPU per track: muxing alone, and a recording bot in a real call.

1. Muxing: pre-encoded VP8 (640x480 at 30 fps) and Opus (20 ms) frames written
   through :class:`media.sinks.track_file.TrackFile` as fast as possible; CPU
   seconds per second of media is the share of a core one track costs.
2. Call: two publishing bots on the reference server and two receiving bots,
   one recording and one not; each process's CPU over the same window (from
   /proc), so the recording cost shows against the cost of receiving at all.

Run: .venv/bin/python benchmarks/bench_recorder.py [--call-seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from callbot.rtc.tap import EncodedFrame
from media.sinks.track_file import TrackFile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.media.encoded_media import opus_frames, vp8_frames  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def mux_cost(
    kind: str, frames: list[EncodedFrame], rate: float, seconds: float
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        track = TrackFile(Path(directory) / f"{kind}.webm", kind)
        start = time.process_time()
        for i, frame in enumerate(frames):
            track.write(frame, i / rate)
        track.close()
        cpu = time.process_time() - start
    print(
        f"mux {kind:<5} {len(frames):5d} frames, {seconds:5.1f} s of media: "
        f"{cpu * 1000:7.1f} ms CPU = {cpu / seconds * 100:5.2f} % of a core per track"
    )


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def start_worker(config: dict[str, Any]) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "callbot.bot.worker",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "CALLBOT_LOG_LEVEL": "WARNING"},
    )
    assert process.stdin is not None
    process.stdin.write((json.dumps(config) + "\n").encode())
    return process


async def call_cost(seconds: float) -> None:
    from callbot.server.app import ReferenceServer
    from callbot.server.settings import ServerSettings

    with tempfile.TemporaryDirectory() as directory:
        async with ReferenceServer(ServerSettings(port=0)) as server:

            def bot(user_id: str, **extra: Any) -> dict[str, Any]:
                return {
                    "server_url": server.url,
                    "room_id": "lobby",
                    "user_id": user_id,
                    "bot_id": user_id,
                    **extra,
                }

            recorder = {"name": "recorder", "config": {"directory": directory}}
            receivers = {
                "recording": await start_worker(
                    bot("rec", video=False, audio=False, plugins=[recorder])
                ),
                "not recording": await start_worker(
                    bot("plain", video=False, audio=False)
                ),
            }
            publishers = [
                await start_worker(bot(u, width=640, height=480)) for u in ("a", "b")
            ]
            await asyncio.sleep(6.0)  # joined, negotiated, media flowing
            call = server.call("lobby")
            if call is not None:
                call.set_adaptive_quality(False)  # every publisher at 30 fps
            await asyncio.sleep(2.0)
            before = {k: cpu_seconds(p.pid) for k, p in receivers.items()}
            await asyncio.sleep(seconds)
            after = {k: cpu_seconds(p.pid) for k, p in receivers.items()}
            for process in [*publishers, *receivers.values()]:
                process.kill()
                await process.wait()

        sizes = sorted(p.stat().st_size for p in Path(directory).glob("*/*.webm"))
    print(f"call: 2 publishers (640x480 VP8 30 fps + Opus), {seconds:.0f} s window")
    for name in receivers:
        share = (after[name] - before[name]) / seconds * 100
        print(f"  receiving bot, {name:<13}: {share:5.1f} % of a core")
    extra = (after["recording"] - before["recording"]) - (
        after["not recording"] - before["not recording"]
    )
    print(
        f"  recording cost: {extra / seconds * 100:+5.1f} % of a core for 4 tracks "
        f"({extra / seconds * 25:+5.2f} % per track); files {sizes} bytes"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--call-seconds", type=float, default=15.0)
    parser.add_argument("--no-call", action="store_true")
    args = parser.parse_args()

    video = list(vp8_frames(600, 640, 480))
    mux_cost("video", video, 30, 20.0)
    audio = list(opus_frames(20.0))
    mux_cost("audio", audio, 50, 20.0)
    if not args.no_call:
        asyncio.run(call_cost(args.call_seconds))


if __name__ == "__main__":
    main()
