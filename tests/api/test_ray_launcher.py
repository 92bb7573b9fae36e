"""launcher = ray on a real two-node Ray cluster, in a network namespace.

The scenario (tests/api/ray_cluster_scenario.py) runs under ``unshare`` in new
network, PID and mount namespaces: the network has only ``lo``, so neither
Ray nor the bots can reach or announce another address, and every process the
scenario starts ends with it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SCENARIO = Path(__file__).with_name("ray_cluster_scenario.py")
ROOT = SCENARIO.parents[2]


def namespace_command(*command: str) -> list[str]:
    """``command`` in new network, PID and mount namespaces with ``lo`` up."""
    unshare = shutil.which("unshare")
    ip = shutil.which("ip") or "/usr/sbin/ip"
    assert unshare is not None, "util-linux's unshare is needed (tests/system-deps.sh)"
    assert Path(ip).exists(), "iproute2's ip is needed (tests/system-deps.sh)"
    as_user = [] if os.geteuid() == 0 else ["--map-root-user"]
    script = f'{ip} link set lo up && exec "$@"'
    return [
        unshare,
        *as_user,
        "--net",
        "--pid",
        "--fork",
        "--mount-proc",
        "--kill-child",
        "sh",
        "-c",
        script,
        "sh",
        *command,
    ]


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    workdir = tmp_path_factory.mktemp("ray")
    done = subprocess.run(
        namespace_command(sys.executable, str(SCENARIO), str(workdir)),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, RAY_USAGE_STATS_ENABLED="0"),
    )
    logs = "\n".join(
        f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
        for p in sorted(workdir.glob("*.log"))
    )
    assert done.returncode == 0, (
        f"the Ray scenario failed ({done.returncode}):\n{done.stderr[-6000:]}\n{logs}"
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.integration
def test_the_cluster_is_two_nodes_on_loopback_only(scenario: dict[str, Any]) -> None:
    assert scenario["cluster_nodes"] == 2
    assert scenario["node_addresses"] == ["127.0.0.1"]
    assert scenario["cluster_slots"] == 2


@pytest.mark.integration
def test_bots_land_on_both_nodes_and_exchange_media(scenario: dict[str, Any]) -> None:
    first = scenario["first"]
    a, b = scenario["bot_ids"]
    assert sorted(bot["node"] for bot in first.values()) == scenario["node_ids"]
    assert first[a]["participants"] == ["ray-bot-b"]
    assert first[b]["participants"] == ["ray-bot-a"]
    for bot in first.values():
        assert bot["status"] == "in_call"
        assert bot["video_frames"] > 20
        assert bot["audio_frames"] > 20
        assert bot["video_size"] == [[640, 480]]


@pytest.mark.integration
def test_a_full_cluster_refuses_a_bot_with_the_reason(scenario: dict[str, Any]) -> None:
    third = scenario["third"]
    assert third["status"] == 503
    assert third["body"]["error"]["code"] == "launch_failed"
    assert "no free callbot_slot" in third["body"]["error"]["message"]
    assert third["body"]["error"]["retryable"] is True


@pytest.mark.integration
def test_a_restarted_control_plane_reattaches_by_name(scenario: dict[str, Any]) -> None:
    after = scenario["after_restart"]
    for bot_id, before in scenario["first"].items():
        assert after[bot_id] == {
            "status": "in_call",
            "node": before["node"],
            "pid": before["pid"],
        }


@pytest.mark.integration
def test_delete_leaves_and_frees_the_slot(scenario: dict[str, Any]) -> None:
    assert scenario["delete_status"] == 202
    assert scenario["left"]["status"] == "left"
    assert scenario["left"]["history"][-2:] == ["leaving", "left"]
    # The actor's log lines stay with the bot once the actor is gone.
    assert scenario["left"]["log_lines"] > 0
    assert scenario["actor_a_gone"] is True
    assert scenario["slots_after_leave"] == 1


@pytest.mark.integration
def test_a_killed_actor_fails_the_bot_with_the_reason(scenario: dict[str, Any]) -> None:
    head_node = scenario["first"][scenario["head_bot"]]["node"]
    assert scenario["replacement_node"] == head_node
    killed = scenario["killed"]
    assert killed["error"]["code"] == "actor_died"
    assert killed["error"]["message"].startswith("the bot's Ray actor died")
    assert killed["seconds"] < 10
    assert scenario["health_after"] == 200


@pytest.mark.integration
def test_a_lost_node_fails_its_bot_and_the_orphan_leaves(
    scenario: dict[str, Any],
) -> None:
    lost = scenario["node_lost"]
    # Whichever rule fires first: the launcher's heartbeat (6 s here, the
    # orphan is gone by then) or Ray's node health check (about 15 s).
    assert (lost["error"]["code"], lost["error"]["message"]) in {
        ("heartbeat_lost", "no report from the bot for 6 s"),
    } or (
        lost["error"]["code"] == "actor_died" and "node" in lost["error"]["message"]
    ), lost
    assert lost["failed_after"] < 30
    # The orphaned actor sees its raylet gone within a second, leaves its
    # call and ends: no ghost participant stays in the room.
    assert lost["process_ended_after"] < 15
    assert lost["log_lines"] > 0
