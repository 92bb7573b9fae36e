"""Control plane start-up: POST /bots → in_call and → first remote frame, warm
pool against cold start, and the memory of one bot (worker + keeper).

Bots join in rooms of two on a reference server started here; the figures
come from the control plane's own records (first remote frame: the first stats
report, sent once a second, that counts an inbound frame).

Run: .venv/bin/python benchmarks/bench_control_plane.py [BOTS]
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI

from api.app import create_app
from api.keys import create_key
from api.launcher import LocalProcessLauncher
from api.settings import ControlPlaneSettings
from api.store import Store
from callbot.server.app import ReferenceServer
from callbot.server.settings import RoomConfig, ServerSettings


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
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(count: int, warm: int) -> dict[str, float]:
    rooms = [RoomConfig(name=f"room-{n}") for n in range((count + 1) // 2)]
    server = ReferenceServer(ServerSettings(host="127.0.0.1", port=0, rooms=rooms))
    await server.start()
    data = Path(tempfile.mkdtemp(prefix="callbot-bench-"))
    store = Store("sqlite://")
    key = create_key(store, "bench")[1]
    launcher = LocalProcessLauncher(
        bots_dir=data / "bots", warm_pool=warm, env={"CALLBOT_LOG_LEVEL": "WARNING"}
    )
    app = create_app(
        launcher,
        store=store,
        settings=ControlPlaneSettings(data_dir=data, max_bots=count + 1),
    )
    try:
        async with (
            serve(app) as url,
            httpx.AsyncClient(
                base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30
            ) as client,
        ):
            while launcher.warm < warm:
                await asyncio.sleep(0.1)
            records = app.state.bots
            ids = []
            for n in range(count):
                body = {
                    "server_url": server.url,
                    "room_id": f"room-{n // 2}",
                    "user_id": f"bot-{n}",
                }
                ids.append((await client.post("/bots", json=body)).json()["id"])
                # One bot at a time: the figure is a start, not a stampede.
                deadline = time.monotonic() + 60
                while records[ids[-1]].in_call_at is None:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{ids[-1]} did not reach in_call")
                    await asyncio.sleep(0.02)
            deadline = time.monotonic() + 60
            while any(records[i].first_frame_at is None for i in ids):
                if time.monotonic() > deadline:
                    raise RuntimeError("not every bot got a remote frame")
                await asyncio.sleep(0.1)
            in_call = [records[i].in_call_at - records[i].created_at for i in ids]
            frame = [records[i].first_frame_at - records[i].created_at for i in ids]
            rss = [
                rss_kib(records[i].pid) + rss_kib(records[i].keeper_pid) for i in ids
            ]
            for bot_id in ids:
                await client.delete(f"/bots/{bot_id}")
    finally:
        await server.stop()
        store.close()
        shutil.rmtree(data, ignore_errors=True)
    return {
        "in_call_p50": percentile(in_call, 0.5),
        "in_call_p95": percentile(in_call, 0.95),
        "frame_p50": percentile(frame, 0.5),
        "frame_p95": percentile(frame, 0.95),
        "rss_mib": statistics.mean(rss) / 1024,
    }


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    for label, warm in (("cold", 0), ("warm", 2)):
        r = asyncio.run(run(count, warm))
        print(
            f"{label}: {count} bots, POST→in_call p50 {r['in_call_p50']:.2f} s"
            f" p95 {r['in_call_p95']:.2f} s; → first remote frame"
            f" p50 {r['frame_p50']:.2f} s p95 {r['frame_p95']:.2f} s;"
            f" RSS per bot (worker + keeper) {r['rss_mib']:.0f} MiB",
            flush=True,
        )


if __name__ == "__main__":
    main()
