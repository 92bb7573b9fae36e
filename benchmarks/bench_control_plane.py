"""Control plane start-up: POST /bots → in_call and → first remote frame, warm
pool against cold start, and the memory of one bot (worker + keeper).

Bots join in rooms of two on a reference server started here. They run in
waves (``--wave`` bots, default 4 = two rooms of two): within a wave the bots
start one at a time (each POST waits for the previous bot's in_call), then the
wave waits for every first remote frame, is measured and leaves before the
next wave starts, so a small machine is never overloaded. In the warm mode the
pool holds one warm worker per bot of a wave and is refilled between waves, as
a running control plane would between bursts; a wave starts once the launcher
counts every warm worker ready (its worker has reported its imports done).

The figures come from the control plane's own records: in_call when the
launcher reads the report (it polls every 0.1 s); first remote frame at the
first stats report (sent once a second) that counts an inbound frame. p50 and
p95 interpolate between the nearest samples. RSS is read once every bot of a
wave has media.

Run: .venv/bin/python benchmarks/bench_control_plane.py [BOTS] [--wave N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import math
import os
import shutil
import socket
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI

from api.app import create_app
from api.keys import create_key
from api.launcher import LocalProcessLauncher
from api.record import BotRecord
from api.settings import ControlPlaneSettings
from api.store import Store
from callbot.server.app import ReferenceServer
from callbot.server.settings import RoomConfig, ServerSettings

logger = logging.getLogger("bench_control_plane")

START_TIMEOUT = 60.0  # seconds for one bot to reach in_call
FRAME_TIMEOUT = 60.0  # seconds for a wave to get every first remote frame
LEAVE_TIMEOUT = 30.0  # seconds for a wave to have left
REFILL_TIMEOUT = 120.0  # seconds for the warm pool to fill up


@dataclass
class Samples:
    """What one mode measured, one entry per bot."""

    in_call: list[float] = field(default_factory=list)
    frame: list[float] = field(default_factory=list)
    rss_kib: list[int] = field(default_factory=list)
    warm_starts: int = 0
    seconds: float = 0.0


@contextlib.asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


def rss_kib(pid: int | None) -> int:
    if pid is None:
        return 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def percentile(values: list[float], q: float) -> float:
    """The q-quantile, linear between the two nearest samples."""
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def load_text() -> str:
    one, five, fifteen = os.getloadavg()
    return (
        f"load average {one:.2f} {five:.2f} {fifteen:.2f} (1/5/15 min)"
        f" on {os.cpu_count()} cores"
    )


async def wait_for(
    done: Callable[[], bool],
    records: list[BotRecord],
    timeout: float,
    what: str,
) -> None:
    """Wait until done(); a bot of records failing or the timeout raises."""
    deadline = time.monotonic() + timeout
    while not done():
        for r in records:
            if r.status == "failed":
                raise RuntimeError(f"{r.bot_id} failed: {r.reason}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} within {timeout:.0f} s")
        await asyncio.sleep(0.02)


def in_call(record: BotRecord) -> bool:
    return record.in_call_at is not None


async def run_wave(
    client: httpx.AsyncClient,
    app: FastAPI,
    launcher: LocalProcessLauncher,
    server_url: str,
    bots: range,
    samples: Samples,
) -> None:
    """Start these bots one at a time, measure them, and make them leave."""
    records: list[BotRecord] = []
    for n in bots:
        if launcher.warm > 0:
            samples.warm_starts += 1
        body = {"server_url": server_url, "room_id": f"room-{n // 2}"}
        response = await client.post("/bots", json={**body, "user_id": f"bot-{n}"})
        response.raise_for_status()
        record: BotRecord = app.state.bots[response.json()["id"]]
        records.append(record)
        # One bot at a time: the figure is a start, not a stampede.
        await wait_for(
            functools.partial(in_call, record),
            records,
            START_TIMEOUT,
            f"{record.bot_id} did not reach in_call",
        )
    await wait_for(
        lambda: all(r.first_frame_at is not None for r in records),
        records,
        FRAME_TIMEOUT,
        "not every bot got a remote frame",
    )
    for r in records:
        assert r.in_call_at is not None and r.first_frame_at is not None
        samples.in_call.append(r.in_call_at - r.created_at)
        samples.frame.append(r.first_frame_at - r.created_at)
        samples.rss_kib.append(rss_kib(r.pid) + rss_kib(r.keeper_pid))
    for r in records:
        (await client.delete(f"/bots/{r.bot_id}")).raise_for_status()
    await wait_for(
        lambda: all(r.terminal for r in records), [], LEAVE_TIMEOUT, "bots not gone"
    )


async def run(count: int, wave: int, warm: bool) -> Samples:
    label = "warm" if warm else "cold"
    pool = wave if warm else 0
    rooms = [RoomConfig(name=f"room-{n}") for n in range(count // 2)]
    server = ReferenceServer(ServerSettings(host="127.0.0.1", port=0, rooms=rooms))
    await server.start()
    data = Path(tempfile.mkdtemp(prefix="callbot-bench-"))
    store = Store("sqlite://")
    key = create_key(store, "bench")[1]
    launcher = LocalProcessLauncher(
        bots_dir=data / "bots", warm_pool=pool, env={"CALLBOT_LOG_LEVEL": "WARNING"}
    )
    app = create_app(
        launcher,
        store=store,
        settings=ControlPlaneSettings(data_dir=data, max_bots=wave + 1),
    )
    samples = Samples()
    began = time.monotonic()
    waves = math.ceil(count / wave)
    try:
        async with (
            serve(app) as url,
            httpx.AsyncClient(
                base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30
            ) as client,
        ):
            for number, first in enumerate(range(0, count, wave), start=1):
                # The pool refills in the background; a wave starts on a full one.
                if not await launcher.wait_warm(pool, REFILL_TIMEOUT):
                    raise RuntimeError(
                        f"the warm pool was not ready in {REFILL_TIMEOUT:.0f} s"
                    )
                done = len(samples.in_call)
                logger.info(
                    "%s wave %d/%d: %d bots, %d warm workers, %s",
                    label,
                    number,
                    waves,
                    min(wave, count - first),
                    launcher.warm,
                    load_text(),
                )
                await run_wave(
                    client,
                    app,
                    launcher,
                    server.url,
                    range(first, min(first + wave, count)),
                    samples,
                )
                logger.info(
                    "%s wave %d/%d: in_call %s s, first remote frame %s s",
                    label,
                    number,
                    waves,
                    " ".join(f"{v:.2f}" for v in samples.in_call[done:]),
                    " ".join(f"{v:.2f}" for v in samples.frame[done:]),
                )
    finally:
        await server.stop()
        store.close()
        shutil.rmtree(data, ignore_errors=True)
    samples.seconds = time.monotonic() - began
    return samples


def figures(values: list[float]) -> str:
    return (
        f"p50 {percentile(values, 0.5):.2f} s p95 {percentile(values, 0.95):.2f} s"
        f" max {max(values):.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "bots", nargs="?", type=int, default=20, help="bots per mode (even)"
    )
    parser.add_argument(
        "--wave",
        type=int,
        default=4,
        help="bots running at once (even: rooms of two); also the warm pool",
    )
    args = parser.parse_args()
    if args.bots < 2 or args.bots % 2 or args.wave < 2 or args.wave % 2:
        parser.error("BOTS and --wave must be even and at least 2 (rooms of two)")
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s"
    )
    logger.setLevel(logging.INFO)

    print(
        f"{args.bots} bots per mode in waves of {args.wave}"
        f" ({args.wave // 2} rooms of two); at start: {load_text()}",
        flush=True,
    )
    results: dict[str, Samples] = {}
    for label, warm in (("cold", False), ("warm", True)):
        s = results[label] = asyncio.run(run(args.bots, args.wave, warm))
        pooled = (
            f"; {s.warm_starts} of {len(s.in_call)} found a warm worker waiting"
            if warm
            else ""
        )
        print(
            f"{label}: n {len(s.in_call)}, POST→in_call {figures(s.in_call)};"
            f" → first remote frame {figures(s.frame)};"
            f" RSS per bot (worker + keeper) mean"
            f" {statistics.mean(s.rss_kib) / 1024:.0f} MiB"
            f"{pooled} ({s.seconds:.0f} s)",
            flush=True,
        )
    cold, warm_s = results["cold"], results["warm"]
    print(
        "warm/cold p50: in_call"
        f" {percentile(warm_s.in_call, 0.5) / percentile(cold.in_call, 0.5):.2f},"
        " first remote frame"
        f" {percentile(warm_s.frame, 0.5) / percentile(cold.frame, 0.5):.2f};"
        f" at end: {load_text()}",
        flush=True,
    )


if __name__ == "__main__":
    main()
