"""CPU of the reference server's media plane while it forwards real calls.

Starts the reference server in this process and N bots as worker processes in
one room, lets media flow, and prints the server's CPU share (this process)
and the bots' (their processes), per forwarded stream. Every bot publishes
audio and video and receives everyone else's, so the server forwards
``N * (N - 1) * 2`` streams.

    .venv/bin/python benchmarks/bench_relay.py [--bots 2] [--seconds 15] [--active]

``--active`` turns adaptive quality off, so every bot is active (30 fps);
otherwise bots are viewers (5 fps), as in a call where nobody speaks.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from callbot.server.app import ReferenceServer
from callbot.server.settings import ServerSettings
from tests.worker_bots import WorkerBot, stop_bots


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def proc_cpu(pid: int) -> float:
    """CPU seconds of a running process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


async def main(bots: int, seconds: float, active: bool) -> None:
    room = "bench"
    async with ReferenceServer(
        ServerSettings(port=0, rooms=[{"name": room}])
    ) as server:
        names = [f"bot-{i}" for i in range(1, bots + 1)]
        workers = [await WorkerBot(server.url, room, n).start() for n in names]
        try:
            for worker in workers:
                await worker.wait_for(lambda w=worker: w.status == "in_call", 20)
            if active:
                server.set_adaptive_quality(room, False)
            # Let every subscription start before measuring.
            await asyncio.sleep(5)
            pids = [w.process.pid for w in workers if w.process is not None]
            start_wall = time.monotonic()
            start_server = time.process_time()
            start_bots = [proc_cpu(pid) for pid in pids]
            await asyncio.sleep(seconds)
            wall = time.monotonic() - start_wall
            server_cpu = time.process_time() - start_server
            bot_cpu = [
                proc_cpu(pid) - s for pid, s in zip(pids, start_bots, strict=True)
            ]
            call = server.call(room)
            assert call is not None
            forwarded = 0
            frames = 0
            for name in names:
                endpoint = call.endpoint_of(name)
                stats = call.engine.endpoint_stats(endpoint) if endpoint else {}
                for track in stats.get("published", {}).values():
                    forwarded += len(track["subscribers"])
                    frames += track["frames"]
        finally:
            await stop_bots(workers)

    tier = "active, 30 fps" if active else "viewer, 5 fps"
    print(
        f"{bots} bots ({tier}), {seconds:.0f} s window, {forwarded} forwarded streams"
    )
    share = 100 * server_cpu / wall
    print(f"  server (media plane + signalling): {share:5.1f} % of a core")
    if forwarded:
        print(
            f"    per forwarded stream:           {share / forwarded:5.2f} % of a core"
        )
    for name, cpu in zip(names, bot_cpu, strict=True):
        print(f"  {name}: {100 * cpu / wall:5.1f} % of a core")
    print(f"  frames received by the server from publishers: {frames}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bots", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--active", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(args.bots, args.seconds, args.active))
