"""The bot's Ray actor class, called directly (no cluster): reports by offset,
a bad configuration, the node's own ICE addresses."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from callbot.bot import ray_actor
from callbot.bot.ray_actor import REPLAY_MARGIN, BotActor, node_config


@pytest.fixture
def actor(monkeypatch: pytest.MonkeyPatch) -> Iterator[BotActor]:
    # Outside a Ray worker there is no runtime context to ask.
    monkeypatch.setattr(
        BotActor, "where", lambda self: {"pid": 1, "host": "h", "node_id": "n"}
    )
    # The actor sets up its process's logging; give the test's back after.
    monkeypatch.setattr(ray_actor, "_tail", None)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield BotActor("WARNING")
    root.handlers[:] = handlers
    root.setLevel(level)


def fill(actor: BotActor, count: int) -> None:
    """Reports numbered by their offset."""
    for _ in range(count):
        actor._report({"type": "stats", "n": actor._base + len(actor._lines)})


async def test_poll_hands_out_reports_from_the_offset_on(actor: BotActor) -> None:
    fill(actor, 5)
    first = await actor.poll(0)
    assert [json.loads(line)["n"] for line in first["lines"]] == [0, 1, 2, 3, 4]
    assert first["offset"] == 5
    assert first["returncode"] is None
    fill(actor, 2)
    second = await actor.poll(first["offset"])
    assert [json.loads(line)["n"] for line in second["lines"]] == [5, 6]
    assert second["offset"] == 7
    assert second["skipped"] == 0


async def test_acknowledged_reports_are_dropped_beyond_the_replay_margin(
    actor: BotActor,
) -> None:
    fill(actor, REPLAY_MARGIN + 100)
    answer = await actor.poll(REPLAY_MARGIN + 100)
    assert answer["lines"] == []
    # A control plane that restarts from an older saved offset still finds
    # the last REPLAY_MARGIN reports...
    again = await actor.poll(100)
    assert len(again["lines"]) == REPLAY_MARGIN
    assert json.loads(again["lines"][0])["n"] == 100
    assert again["skipped"] == 0
    # ...but not those before them, and is told how many it missed.
    older = await actor.poll(40)
    assert older["skipped"] == 60
    assert json.loads(older["lines"][0])["n"] == 100


async def test_a_bad_configuration_fails_with_the_reason_and_ends(
    actor: BotActor,
) -> None:
    where = await actor.start(json.dumps({"room_id": "lobby"}))
    assert where["pid"] == 1
    answer = await actor.poll(0)
    assert answer["returncode"] == 2
    report = json.loads(answer["lines"][0])
    assert report["type"] == "status"
    assert report["status"] == "failed"
    assert report["reason"].startswith("bad config: ")
    assert "server_url" in report["reason"]
    assert await actor.leave() is False
    with pytest.raises(RuntimeError, match="already run a bot"):
        await actor.start("{}")


async def test_logs_keep_the_newest_lines(actor: BotActor) -> None:
    ray_actor.logger.warning("first line")
    ray_actor.logger.warning("second line")
    lines = await actor.logs(2)
    assert [line.rsplit(" ", 2)[-2:] for line in lines] == [
        ["first", "line"],
        ["second", "line"],
    ]
    assert await actor.logs(0) == []


def config(**extra: Any) -> str:
    return json.dumps(
        {"server_url": "ws://127.0.0.1:4000/socket", "room_id": "r", **extra}
    )


def test_the_nodes_ice_addresses_win_over_the_control_planes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CALLBOT_ICE_ADDRESSES", '["10.42.1.7"]')
    line = node_config(config(ice_addresses=["10.42.0.17"]))
    assert json.loads(line)["ice_addresses"] == ["10.42.1.7"]


def test_without_node_addresses_the_configuration_is_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CALLBOT_ICE_ADDRESSES", raising=False)
    line = config(ice_addresses=["127.0.0.1"])
    assert node_config(line) == line


def test_node_addresses_that_are_not_a_list_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CALLBOT_ICE_ADDRESSES", '"10.42.1.7"')
    with pytest.raises(ValueError, match="must be a JSON list of strings"):
        node_config(config())


async def test_poll_carries_the_log_lines_since_the_last_poll(actor: BotActor) -> None:
    ray_actor.logger.warning("one")
    first = await actor.poll(0, 0)
    assert [line.rsplit(" ", 1)[-1] for line in first["log"]] == ["one"]
    ray_actor.logger.warning("two")
    ray_actor.logger.warning("three")
    second = await actor.poll(first["offset"], first["log_offset"])
    assert [line.rsplit(" ", 1)[-1] for line in second["log"]] == ["two", "three"]
    assert second["log_offset"] == first["log_offset"] + 2
    third = await actor.poll(second["offset"], second["log_offset"])
    assert third["log"] == []


async def test_a_bot_whose_ray_node_is_gone_leaves_and_the_process_ends(
    actor: BotActor, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Running:
        bot_id = "b-1"
        left = False

        def leave(self) -> None:
            self.left = True

    bot = Running()
    actor._bot = bot  # type: ignore[assignment]
    actor._task = asyncio.get_running_loop().create_future()  # type: ignore[assignment]
    exits: list[int] = []
    monkeypatch.setattr(ray_actor, "NODE_CHECK_INTERVAL", 0.01)
    monkeypatch.setattr(ray_actor, "ORPHAN_LEAVE_TIMEOUT", 0.05)
    monkeypatch.setattr(ray_actor.os, "_exit", exits.append)
    check = asyncio.create_task(actor._check_node())
    await asyncio.sleep(0.05)
    assert exits == [] and not bot.left
    # The raylet died: the actor's parent is now another process.
    monkeypatch.setattr(ray_actor.os, "getppid", lambda: 1)
    await asyncio.wait_for(check, 2.0)
    assert bot.left
    assert exits == [ray_actor.EXIT_FAILED]


async def test_a_misconfigured_node_is_named_as_the_reason(
    actor: BotActor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLBOT_ICE_ADDRESSES", "not-json")
    await actor.start(config())
    report = json.loads((await actor.poll(0))["lines"][0])
    assert report["status"] == "failed"
    assert report["reason"].startswith("this Ray node is misconfigured: ")
