"""Transcoder real-time factor: 4 participants at 640x360, 15 fps, composited.

1. Throughput: the live composite driven as fast as it goes on an injected
   clock (render, mix, H.264 + AAC encode, MP4 and HLS written). The real-time
   factor is processing seconds per second of composite: below 1.0 keeps up.
2. Paced: the same composite in its worker thread for real, fed by four
   sources at 15 fps and four 50 Hz audio sources from other threads; frames
   written and dropped, and the process's CPU share.

Inputs are decoded-frame stand-ins (moving pattern frames in yuv420p), as the
bot's receivers hand them over; decoding is the bot's cost, not the
composite's.

3. With ``--call SECONDS``: a transcoding bot and four publishing bots
   (640x360, 15 fps) on the reference server, all as worker processes on this
   machine; the transcoder's own report (frames, dropped, real-time factor)
   and its process's CPU. The publishers' encoding shares the same cores.

Run: .venv/bin/python benchmarks/bench_transcoder.py [--seconds 10] [--call 15]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import av
import cv2
import numpy as np

from media.live_composite import LiveComposite
from media.sinks.composite_output import EncodingSettings
from media.sources.pattern import PatternRenderer

USERS = ("alice", "bob", "carol", "dave")
WIDTH, HEIGHT, FPS = 640, 360, 15


def source_frames(name: str, count: int = 30) -> list[av.VideoFrame]:
    renderer = PatternRenderer(name, WIDTH, HEIGHT)
    frames = []
    for index in range(count):
        image = renderer.render(index * 3, 0.0)
        yuv = cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420)
        frames.append(av.VideoFrame.from_ndarray(yuv, format="yuv420p"))
    return frames


def tone_frames(frequency: float, count: int = 50) -> list[av.AudioFrame]:
    frames = []
    for index in range(count):
        t = (np.arange(960) + index * 960) / 48000
        wave = (np.sin(2 * np.pi * frequency * t) * 4000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(
            np.repeat(wave, 2).reshape(1, -1), format="s16", layout="stereo"
        )
        frame.sample_rate = 48000
        frames.append(frame)
    return frames


def throughput(settings: EncodingSettings, seconds: float, directory: Path) -> None:
    videos = {u: source_frames(u) for u in USERS}
    audios = {u: tone_frames(300 + 100 * i) for i, u in enumerate(USERS)}
    clock = [0.0]
    composite = LiveComposite(
        settings,
        directory / "throughput.mp4",
        hls_dir=directory / "hls-throughput",
        clock=lambda: clock[0],
    )
    for user in USERS:
        composite.participant_joined(user, user.title())
    composite.speaking("bob", True)
    composite.open(0.0)
    audio_index = 0
    wall, cpu = time.perf_counter(), time.process_time()
    for index in range(int(seconds * FPS)):
        now = clock[0] = index / FPS
        for user in USERS:
            composite.video_frame(user, videos[user][index % 30])
        while audio_index * 0.02 < now + 0.1:
            for user in USERS:
                composite.audio_frame(user, audios[user][audio_index % 50])
            audio_index += 1
        composite.tick(now)
    stats = composite.close()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(
        f"throughput: {stats.duration:.1f} s of composite in {wall:.2f} s wall, "
        f"{cpu:.2f} s CPU; real-time factor {wall / stats.duration:.3f} "
        f"(CPU {cpu / stats.duration:.3f} core-seconds per second)"
    )


def paced(settings: EncodingSettings, seconds: float, directory: Path) -> None:
    composite = LiveComposite(
        settings, directory / "paced.mp4", hls_dir=directory / "hls-paced"
    )
    for user in USERS:
        composite.participant_joined(user, user.title())
    stop = threading.Event()

    def feed(user: str, rate: float, push: object, frames: list[object]) -> None:
        start = time.monotonic()
        index = 0
        while not stop.is_set():
            push(user, frames[index % len(frames)])  # type: ignore[operator]
            index += 1
            stop.wait(max(0.0, start + index / rate - time.monotonic()))

    threads = []
    for i, user in enumerate(USERS):
        threads.append(
            threading.Thread(
                target=feed,
                args=(user, FPS, composite.video_frame, source_frames(user)),
            )
        )
        threads.append(
            threading.Thread(
                target=feed,
                args=(user, 50, composite.audio_frame, tone_frames(300 + 100 * i)),
            )
        )
    cpu = time.process_time()
    composite.start()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    stats = composite.stop()
    cpu = time.process_time() - cpu
    expected = round(stats.duration * FPS)
    print(
        f"paced: {stats.duration:.1f} s, {stats.frames} of {expected} frames "
        f"written, {stats.dropped} dropped; real-time factor "
        f"{stats.real_time_factor:.3f}; process CPU {cpu / seconds * 100:.0f} % "
        "of a core"
    )


async def call(seconds: float, directory: Path) -> None:
    import asyncio
    import os
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from callbot.server.app import ReferenceServer
    from callbot.server.settings import ServerSettings
    from tests.worker_bots import WorkerBot, stop_bots

    os.environ["CALLBOT_LOG_LEVEL"] = "WARNING"
    ticks = os.sysconf("SC_CLK_TCK")

    def cpu_seconds(pid: int) -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / ticks

    async with ReferenceServer(ServerSettings(port=0)) as server:
        config = {"directory": str(directory / "call"), "fps": FPS}
        composer = WorkerBot(
            server.url,
            "lobby",
            "composer",
            video=False,
            audio=False,
            plugins=[{"name": "transcoder", "config": config}],
        )
        publishers = [
            WorkerBot(server.url, "lobby", user, width=WIDTH, height=HEIGHT, fps=FPS)
            for user in USERS
        ]
        try:
            await composer.start()
            await composer.wait_for(lambda: composer.status == "in_call", 15, "join")
            for publisher in publishers:
                await publisher.start()
            await composer.wait_for(
                lambda: all(composer.video_frames(u) > 0 for u in USERS), 30, "video"
            )
            server.set_adaptive_quality("lobby", False)
            assert composer.process is not None
            pid = composer.process.pid
            before, started = cpu_seconds(pid), time.monotonic()
            window_start = time.time()
            await asyncio.sleep(seconds)
            cpu = (cpu_seconds(pid) - before) / (time.monotonic() - started)
            received = {u: composer.video_frames(u) for u in USERS}
            await composer.leave(30)
        finally:
            await stop_bots([composer, *publishers])
    (done,) = composer.events("transcoded")
    # Frames of the steady-state window, from the MP4's own timestamps.
    in_call = next(
        float(r["ts"]) for r in composer.reports if r.get("status") == "in_call"
    )
    offset = window_start - in_call
    with av.open(done["mp4"]) as container:
        stream = container.streams.video[0]
        times = [
            float(p.pts * stream.time_base)
            for p in container.demux(stream)
            if p.pts is not None
        ]
    steady = sum(1 for t in times if offset <= t < offset + seconds)
    print(
        f"call: {done['duration']:.1f} s composite, {done['frames']} frames, "
        f"{done['dropped']} dropped; real-time factor "
        f"{done['real_time_factor']:.3f} (worker thread CPU "
        f"{done['cpu_seconds'] / done['duration']:.3f} s per s); "
        f"transcoding bot CPU {cpu * 100:.0f} % "
        f"of a core (receiving, decoding and compositing); frames received "
        f"{received}"
    )
    print(
        f"call, steady {seconds:.0f} s window: {steady} of "
        f"{round(seconds * FPS)} composite frames written"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--preset", default="veryfast")
    parser.add_argument(
        "--call", type=float, default=0.0, metavar="SECONDS", help="also a real call"
    )
    args = parser.parse_args()
    settings = EncodingSettings(
        width=args.width, height=args.height, fps=FPS, preset=args.preset
    )
    print(
        f"4 participants at {WIDTH}x{HEIGHT} {FPS} fps -> "
        f"{settings.width}x{settings.height} H.264 ({settings.preset}) + AAC, "
        f"MP4 + HLS"
    )
    with tempfile.TemporaryDirectory() as directory:
        throughput(settings, args.seconds, Path(directory))
        paced(settings, args.seconds, Path(directory))
        if args.call:
            import asyncio

            asyncio.run(call(args.call, Path(directory)))


if __name__ == "__main__":
    main()
