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
