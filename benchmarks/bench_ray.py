"""Bots as Ray actors: POST /bots → in_call and → first remote frame over a
real two-node Ray cluster, and the memory of one bot's actor process.

The cluster (a head and a second node, ``--node-ip-address 127.0.0.1``, usage
statistics off, WAVE/2 ``callbot_slot`` each) runs in network, PID and mount
namespaces with only ``lo``, which this script makes by re-running itself
under ``unshare`` (root, or unprivileged user namespaces): Ray, the call
server, the control plane and the bots then cannot use any other address.
Bots join in rooms of two, in waves; each wave leaves before the next starts.

Run: .venv/bin/python benchmarks/bench_ray.py [BOTS] [--wave N]
Compare with benchmarks/bench_control_plane.py (local processes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.app import create_app
from api.keys import create_key
from api.ray_launcher import RayLauncher
from api.record import BotRecord
from api.settings import ControlPlaneSettings
from api.store import Store
from benchmarks.bench_control_plane import (
    figures,
    load_text,
    rss_kib,
    serve,
)
from callbot.server.app import ReferenceServer
from callbot.server.settings import RoomConfig, ServerSettings

logger = logging.getLogger("bench_ray")

INSIDE = "CALLBOT_BENCH_IN_NAMESPACE"
RAY = str(Path(sys.executable).with_name("ray"))
START_TIMEOUT = 60.0
FRAME_TIMEOUT = 60.0
LEAVE_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_cluster(slots_per_node: int, temp: Path) -> str:
    """A head and one more node; returns the GCS address."""
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    port = free_port()
    common = [
        "--node-ip-address",
        "127.0.0.1",
        "--num-cpus",
        "0",
        "--resources",
        json.dumps({"callbot_slot": slots_per_node}),
        "--disable-usage-stats",
    ]
    head = ["--head", "--port", str(port), "--include-dashboard", "false"]
    for args in (
        [*head, "--temp-dir", str(temp), *common],
        ["--address", f"127.0.0.1:{port}", *common],
    ):
        subprocess.run([RAY, "start", *args], env=env, check=True, capture_output=True)
    return f"127.0.0.1:{port}"


async def wait_for(check: object, records: list[BotRecord], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    assert callable(check)
    while not check():
        for r in records:
            if r.status == "failed":
                raise RuntimeError(f"{r.bot_id} failed: {r.reason}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g} s")
        await asyncio.sleep(0.02)


async def run(count: int, wave: int) -> dict[str, list[float]]:
    temp = Path(tempfile.mkdtemp(prefix="cbray-", dir="/tmp"))
    address = start_cluster(wave // 2, temp)
    logger.info("two-node Ray cluster at %s, %d slots each", address, wave // 2)
    rooms = [RoomConfig(name=f"room-{n}") for n in range(count // 2)]
    server = ReferenceServer(ServerSettings(host="127.0.0.1", port=0, rooms=rooms))
    await server.start()
    store = Store("sqlite://")
    key = create_key(store, "bench")[1]
    launcher = RayLauncher(address, namespace="bench", log_level="WARNING")
    app = create_app(
        launcher,
        store=store,
        settings=ControlPlaneSettings(data_dir=temp, max_bots=wave + 1),
    )
    samples: dict[str, list[float]] = {"in_call": [], "frame": [], "rss": []}
    try:
        async with (
            serve(app) as url,
            httpx.AsyncClient(
                base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60
            ) as client,
        ):
            await wait_for(lambda: launcher.ready, [], 60.0)
            waves = math.ceil(count / wave)
            for number, first in enumerate(range(0, count, wave), start=1):
                logger.info("wave %d/%d, %s", number, waves, load_text())
                records: list[BotRecord] = []
                for n in range(first, min(first + wave, count)):
                    body = {
                        "server_url": server.url,
                        "room_id": f"room-{n // 2}",
                        "user_id": f"bot-{n}",
                    }
                    answer = await client.post("/bots", json=body)
                    answer.raise_for_status()
                    record = app.state.bots[answer.json()["id"]]
                    records.append(record)
                    await wait_for(
                        lambda r=record: r.in_call_at is not None,
                        records,
                        START_TIMEOUT,
                    )
                await wait_for(
                    lambda rs=records: all(r.first_frame_at for r in rs),
                    records,
                    FRAME_TIMEOUT,
                )
                for r in records:
                    samples["in_call"].append(r.in_call_at - r.created_at)
                    samples["frame"].append(r.first_frame_at - r.created_at)
                    samples["rss"].append(rss_kib(r.pid) / 1024)
                for r in records:
                    (await client.delete(f"/bots/{r.bot_id}")).raise_for_status()
                await wait_for(
                    lambda rs=records: all(r.terminal for r in rs), [], LEAVE_TIMEOUT
                )
                # A left bot's slot is free once its actor is killed.
                await wait_for(lambda: launcher.running == 0, [], LEAVE_TIMEOUT)
                while await launcher.free_slots() < wave:
                    await asyncio.sleep(0.1)
    finally:
        await server.stop()
        store.close()
        subprocess.run([RAY, "stop", "--force"], capture_output=True)
        shutil.rmtree(temp, ignore_errors=True)
    return samples


def inside(args: argparse.Namespace) -> None:
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s"
    )
    logger.setLevel(logging.INFO)
    print(
        f"{args.bots} bots as Ray actors on 2 nodes in waves of {args.wave}"
        f" ({args.wave // 2} rooms of two); at start: {load_text()}",
        flush=True,
    )
    began = time.monotonic()
    s = asyncio.run(run(args.bots, args.wave))
    print(
        f"ray: n {len(s['in_call'])}, POST→in_call {figures(s['in_call'])};"
        f" → first remote frame {figures(s['frame'])};"
        f" RSS per bot (actor process) mean {statistics.mean(s['rss']):.0f} MiB"
        f" ({time.monotonic() - began:.0f} s); at end: {load_text()}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bots", nargs="?", type=int, default=20, help="bots (even)")
    parser.add_argument(
        "--wave", type=int, default=4, help="bots at once (even: rooms of two)"
    )
    args = parser.parse_args()
    if args.bots < 2 or args.bots % 2 or args.wave < 2 or args.wave % 2:
        parser.error("BOTS and --wave must be even and at least 2 (rooms of two)")
    if os.environ.get(INSIDE):
        inside(args)
        return
    as_user = [] if os.geteuid() == 0 else ["--map-root-user"]
    ip = shutil.which("ip") or "/usr/sbin/ip"
    command = [
        "unshare",
        *as_user,
        "--net",
        "--pid",
        "--fork",
        "--mount-proc",
        "--kill-child",
        "sh",
        "-c",
        f'{ip} link set lo up && exec "$@"',
        "sh",
        sys.executable,
        *sys.argv,
    ]
    env = dict(os.environ, **{INSIDE: "1", "RAY_USAGE_STATS_ENABLED": "0"})
    sys.exit(subprocess.run(command, env=env).returncode)


if __name__ == "__main__":
    main()
