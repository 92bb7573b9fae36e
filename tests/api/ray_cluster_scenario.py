"""Bots as Ray actors on a real two-node Ray cluster: the scenario of
tests/api/test_ray_launcher.py.

Run only inside a network namespace that has nothing but ``lo`` (the test
makes one): Ray then has no other address to announce or dial, so every byte
of the cluster, the control plane and the bots' media stays on loopback.

It starts a Ray head and a second node (``ray start --node-ip-address
127.0.0.1``, usage statistics off, one ``callbot_slot`` each), a reference
call server, and ``callbot serve --launcher ray``; then puts two bots into one
room, restarts the control plane by SIGKILL, stops one bot and kills the other
one's actor process. Every observation goes into a JSON object printed as the
last line of stdout, for the test to assert on.

Usage: python tests/api/ray_cluster_scenario.py WORKDIR
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.api.control_plane import CALLBOT, ServeProcess, free_port

logger = logging.getLogger("ray_cluster_scenario")

RAY = str(Path(sys.executable).with_name("ray"))
NAMESPACE = "callbot-test"
ROOM = "ray-room"
HEARTBEAT_TIMEOUT = 6.0


def wait_for(what: str, check: Callable[[], Any], timeout: float) -> Any:
    """Poll ``check`` until it returns something true; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.2)


def ray_start(args: list[str], env: dict[str, str], log: Path) -> None:
    with log.open("ab") as out:
        subprocess.run(
            [RAY, "start", *args], env=env, stdout=out, stderr=out, check=True
        )


def inbound_frames(bot: dict[str, Any], kind: str) -> int:
    return sum(
        t.get("frames", 0)
        for t in bot["tracks"]
        if t["direction"] == "inbound" and t["kind"] == kind
    )


def main(workdir: Path) -> dict[str, Any]:
    result: dict[str, Any] = {}
    ray_env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    # Short: unix socket paths under it must stay below 108 bytes.
    temp = Path(tempfile.mkdtemp(prefix="cbray-", dir="/tmp"))
    gcs_port = free_port()
    address = f"127.0.0.1:{gcs_port}"
    common = [
        "--node-ip-address",
        "127.0.0.1",
        "--num-cpus",
        "0",
        "--resources",
        json.dumps({"callbot_slot": 1}),
        "--disable-usage-stats",
    ]
    logger.info("starting the Ray head on %s", address)
    ray_start(
        [
            "--head",
            "--port",
            str(gcs_port),
            "--include-dashboard",
            "false",
            "--temp-dir",
            str(temp),
            *common,
        ],
        ray_env,
        workdir / "ray-head.log",
    )
    logger.info("starting a second Ray node")
    ray_start(["--address", address, *common], ray_env, workdir / "ray-node.log")

    import ray

    ray.init(address=address, namespace=NAMESPACE, log_to_driver=False)
    nodes = [n for n in ray.nodes() if n["Alive"]]
    result["cluster_nodes"] = len(nodes)
    result["node_addresses"] = sorted({n["NodeManagerAddress"] for n in nodes})
    result["cluster_slots"] = ray.cluster_resources().get("callbot_slot", 0)

    server_port = free_port()
    server_log = (workdir / "server.log").open("wb")
    server = subprocess.Popen(
        [CALLBOT, "server", "--port", str(server_port), "--room", ROOM],
        stdout=server_log,
        stderr=subprocess.STDOUT,
    )
    server_url = f"ws://127.0.0.1:{server_port}/socket"

    data = workdir / "data"
    data.mkdir()
    serve_env = {
        "CALLBOT_LAUNCHER": "ray",
        "CALLBOT_RAY_ADDRESS": address,
        "CALLBOT_RAY_NAMESPACE": NAMESPACE,
        "CALLBOT_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT),
        "CALLBOT_LEAVE_TIMEOUT": "8",
        # A crashed control plane leaves its bots to the next one anyway; this
        # only matters for SIGTERM.
        "CALLBOT_KEEP_BOTS_ON_SHUTDOWN": "true",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    plane = ServeProcess(data, mode=None, **serve_env)
    # Once serve has made (migrated) the database.
    plane.wait_live(60.0)
    plane.create_key()
    wait_for(
        "the control plane to be ready",
        lambda: plane.request("GET", "/health/ready").status_code == 200,
        60.0,
    )

    def post(user: str) -> httpx.Response:
        return plane.request(
            "POST",
            "/bots",
            json={"server_url": server_url, "room_id": ROOM, "user_id": user},
        )

    bot_ids = []
    for user in ("ray-bot-a", "ray-bot-b"):
        answer = post(user)
        assert answer.status_code == 201, answer.text
        bot_ids.append(answer.json()["id"])
    result["bot_ids"] = bot_ids

    def get(bot_id: str) -> dict[str, Any]:
        answer = plane.request("GET", f"/bots/{bot_id}")
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def media_flowing() -> bool:
        bots = [get(b) for b in bot_ids]
        return all(
            b["status"] == "in_call"
            and inbound_frames(b, "video") > 20
            and inbound_frames(b, "audio") > 20
            for b in bots
        )

    logger.info("waiting for media between the two bots")
    wait_for("both bots in_call with media from each other", media_flowing, 90.0)
    bots = [get(b) for b in bot_ids]
    result["first"] = {
        b["id"]: {
            "status": b["status"],
            "node": b["node"],
            "pid": b["pid"],
            "participants": b["participants"],
            "video_frames": inbound_frames(b, "video"),
            "audio_frames": inbound_frames(b, "audio"),
            "video_size": [
                [t.get("width"), t.get("height")]
                for t in b["tracks"]
                if t["direction"] == "inbound" and t["kind"] == "video"
            ],
        }
        for b in bots
    }
    result["node_ids"] = sorted(n["NodeID"] for n in nodes)

    # The cluster is full: a third bot is refused with a clear reason.
    third = post("ray-bot-c")
    result["third"] = {"status": third.status_code, "body": third.json()}

    # The control plane dies; a new one finds both bots by name.
    logger.info("killing the control plane")
    headers = plane.headers
    plane.kill()
    before = {b: result["first"][b]["video_frames"] for b in bot_ids}
    plane = ServeProcess(data, mode=None, **serve_env)
    plane.headers = headers
    plane.wait_live(60.0)

    def grown() -> bool:
        return all(
            get(b)["status"] == "in_call"
            and inbound_frames(get(b), "video") > before[b] + 20
            for b in bot_ids
        )

    wait_for("both bots followed again with media growing", grown, 60.0)
    listed = plane.request("GET", "/bots").json()["bots"]
    result["after_restart"] = {
        b["id"]: {"status": b["status"], "node": b["node"], "pid": b["pid"]}
        for b in listed
    }

    # Stop the bot on the head node: it leaves, its actor is killed and its
    # slot is free again.
    head = next(
        n["NodeID"] for n in nodes if "node:__internal_head__" in n["Resources"]
    )
    first, second = sorted(bot_ids, key=lambda b: result["first"][b]["node"] != head)
    result["head_bot"] = first
    answer = plane.request("DELETE", f"/bots/{first}")
    result["delete_status"] = answer.status_code
    wait_for("the head's bot to leave", lambda: get(first)["status"] == "left", 30.0)
    result["left"] = {
        "status": get(first)["status"],
        "reason": get(first)["reason"],
        "history": [h["status"] for h in get(first)["history"]],
        "log_lines": len(plane.request("GET", f"/bots/{first}/logs").json()["lines"]),
    }

    def actor_gone() -> bool:
        try:
            ray.get_actor(first, namespace=NAMESPACE)
        except ValueError:
            return True
        return False

    result["actor_a_gone"] = bool(wait_for("its actor to end", actor_gone, 20.0))
    result["slots_after_leave"] = wait_for(
        "its slot to be free",
        lambda: ray.available_resources().get("callbot_slot", 0),
        20.0,
    )

    # A new bot takes the freed slot; killing its actor process fails it with
    # Ray's reason.
    answer = post("ray-bot-d")
    assert answer.status_code == 201, answer.text
    third_id = answer.json()["id"]
    wait_for("bot d in_call", lambda: get(third_id)["status"] == "in_call", 60.0)
    result["replacement_node"] = get(third_id)["node"]
    pid = get(third_id)["pid"]
    logger.info("killing bot d's actor process %d", pid)
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    wait_for("bot d to fail", lambda: get(third_id)["status"] == "failed", 30.0)
    result["killed"] = {
        "error": get(third_id)["error"],
        "seconds": round(time.monotonic() - killed_at, 2),
    }

    # The second node dies (its raylet, the actor's parent, is killed): the bot
    # is failed, and its orphaned actor process leaves the call and ends.
    pid = get(second)["pid"]
    raylet = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    logger.info("killing the second node's raylet %d", raylet)
    os.kill(raylet, signal.SIGKILL)
    lost_at = time.monotonic()
    wait_for(
        "the lost node's bot to fail", lambda: get(second)["status"] == "failed", 60.0
    )
    failed_after = time.monotonic() - lost_at
    wait_for(
        "the orphaned actor process to end",
        lambda: (
            not Path(f"/proc/{pid}").exists()
            or "Z" in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        ),
        60.0,
    )
    result["node_lost"] = {
        "error": get(second)["error"],
        "failed_after": round(failed_after, 1),
        "process_ended_after": round(time.monotonic() - lost_at, 1),
        "log_lines": len(plane.request("GET", f"/bots/{second}/logs").json()["lines"]),
    }
    result["health_after"] = plane.request("GET", "/health/live").status_code

    plane.stop(30.0)
    server.terminate()
    server.wait(10)
    server_log.close()
    ray.shutdown()
    # Only this PID namespace's Ray processes: /proc is the namespace's own.
    subprocess.run([RAY, "stop", "--force"], env=ray_env, capture_output=True)
    shutil.rmtree(temp, ignore_errors=True)
    return result


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    outcome = main(Path(sys.argv[1]))
    print(json.dumps(outcome))
