"""Plugins inside a real bot on the reference server: failures and their reports."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from callbot.bot import plugin as plugin_module
from callbot.bot.bot import Bot
from callbot.bot.config import BotConfig
from callbot.bot.plugin import Plugin
from callbot.server.app import ReferenceServer
from callbot.server.settings import ServerSettings

pytestmark = pytest.mark.integration


class Boom(Plugin):
    """Fails when the bot joins the call."""

    name = "boom"

    def on_joined(self, endpoint_id: str) -> None:
        raise RuntimeError("cannot cope")


@pytest.fixture(autouse=True)
def boom_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    real = plugin_module.load_plugin_class

    def load(name: str, registry: Any = None) -> type[Plugin]:
        return Boom if name == "boom" else real(name, registry)

    monkeypatch.setattr(plugin_module, "load_plugin_class", load)


def _config(url: str, essential: bool, duration: float) -> BotConfig:
    return BotConfig.model_validate(
        {
            "server_url": url,
            "room_id": "lobby",
            "user_id": "bot-1",
            "video": False,
            "audio": False,
            "duration": duration,
            "plugins": [{"name": "boom", "essential": essential}],
        }
    )


async def test_failing_plugin_is_reported_and_the_bot_stays() -> None:
    reports: list[dict[str, Any]] = []
    async with ReferenceServer(ServerSettings(port=0)) as server:
        bot = Bot(
            _config(server.url, essential=False, duration=3.0), on_report=reports.append
        )
        started = time.monotonic()
        await asyncio.wait_for(bot.run(), 20)
    errors = [r for r in reports if r.get("event") == "plugin_error"]
    assert [(e["plugin"], e["hook"], e["essential"]) for e in errors] == [
        ("boom", "on_joined", False)
    ]
    assert "cannot cope" in errors[0]["error"]
    assert bot.status == "left"
    assert time.monotonic() - started >= 3.0  # stayed for its duration


async def test_failing_essential_plugin_makes_the_bot_leave_and_fail() -> None:
    reports: list[dict[str, Any]] = []
    async with ReferenceServer(ServerSettings(port=0)) as server:
        bot = Bot(
            _config(server.url, essential=True, duration=30.0), on_report=reports.append
        )
        started = time.monotonic()
        await asyncio.wait_for(bot.run(), 20)
        call = server.call("lobby")
        assert call is None or "bot-1" not in call.participants
    assert time.monotonic() - started < 10
    assert bot.status == "failed"
    assert bot.reason is not None and "plugin boom failed in on_joined" in bot.reason
    statuses = [r["status"] for r in reports if r.get("type") == "status"]
    assert statuses[-2:] == ["leaving", "failed"]


class Watcher(Plugin):
    """Keeps the participant, tier and speaking hooks it hears, in order."""

    name = "watcher"
    heard: list[tuple[Any, ...]] = []

    def on_participant_joined(
        self, user_id: str, endpoint_id: str, display_name: str | None
    ) -> None:
        self.heard.append(("joined", user_id))

    def on_tier_changed(self, user_id: str, tier: str) -> None:
        self.heard.append(("tier", user_id, tier))

    def on_speaking(self, user_id: str, speaking: bool) -> None:
        self.heard.append(("speaking", user_id, speaking))


async def _raw_member(server: ReferenceServer, user_id: str) -> Any:
    from tests.callbot.raw_phoenix import RawClient

    client = await RawClient.open(server.url)
    join_ref, reply = await client.join("call:lobby", {"user_id": user_id})
    assert reply[4]["status"] == "ok"
    joined = await client.request(join_ref, "call:lobby", "join_call", {})
    assert joined["status"] == "ok"
    return client, join_ref


async def _watch(server: ReferenceServer, duration: float) -> list[tuple[Any, ...]]:
    Watcher.heard = []
    spec = _config(server.url, essential=False, duration=duration).model_dump()
    spec["plugins"] = [{"name": "watcher"}]
    bot = Bot(BotConfig.model_validate(spec), plugin_registry={"watcher": Watcher})
    await asyncio.wait_for(bot.run(), 20)
    return Watcher.heard


async def test_plugins_hear_the_tiers_and_speaking_of_those_already_in_the_call() -> (
    None
):
    async with ReferenceServer(ServerSettings(port=0)) as server:
        alice, join_ref = await _raw_member(server, "alice")
        # speaking_state has no reply; the table shows when it arrived.
        await alice.push(join_ref, "call:lobby", "speaking_state", {"speaking": True})
        call = server.call("lobby")
        assert call is not None
        for _ in range(100):
            if call.participants_table()["alice"]["tier"] == "active":
                break
            await asyncio.sleep(0.02)
        assert call.participants_table()["alice"]["tier"] == "active"
        heard = await _watch(server, duration=1.0)
        await alice.close()
    assert heard[:2] == [("joined", "alice"), ("tier", "alice", "active")]
    assert ("speaking", "alice", True) in heard
    assert ("tier", "bot-1", "viewer") in heard


async def test_with_adaptive_quality_off_plugins_hear_every_participant_active() -> (
    None
):
    settings = ServerSettings(port=0, adaptive_quality=False)
    async with ReferenceServer(settings) as server:
        alice, _ = await _raw_member(server, "alice")
        watching = asyncio.create_task(_watch(server, duration=1.5))
        await asyncio.sleep(0.7)
        carol, _ = await _raw_member(server, "carol")
        heard = await watching
        await alice.close()
        await carol.close()
    tiers = [h for h in heard if h[0] == "tier"]
    assert ("tier", "alice", "active") in tiers
    assert ("tier", "bot-1", "active") in tiers
    # carol joins as a viewer; the call's adaptive_quality_changed makes her active.
    assert [t for t in tiers if t[1] == "carol"] == [
        ("tier", "carol", "viewer"),
        ("tier", "carol", "active"),
    ]
