"""A bot's sensor feed: a local source drawn and published; the CLI options."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

import pytest

from callbot.bot.config import BotConfig
from callbot.bot.sensor_feed import SensorFeed, SensorsConfig
from callbot.cli import sensors_option
from callbot.server.app import ReferenceServer
from callbot.server.settings import ServerSettings
from media.overlays.config import OverlayConfig

SENSOR = "bot-hr-1"


async def until(predicate: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


@pytest.mark.integration
async def test_local_source_is_drawn_and_published_until_cancelled() -> None:
    config = SensorsConfig.model_validate(
        {
            "source": {"kind": "local", "synthetic": {"sensor_id": SENSOR}},
            "publish": {"sensor_id": SENSOR},
            "overlay": OverlayConfig.vitals(SENSOR).model_dump(),
        }
    )
    async with ReferenceServer(ServerSettings(port=0)) as server:
        server.set_sensor_attention(SENSOR, "high")
        feed = SensorFeed(config, server.url)
        task = asyncio.create_task(feed.run())
        await until(
            lambda: (
                SENSOR in server.sensors.sensors
                and server.sensors.sensors[SENSOR].measurements >= 100
            )
        )
        assert feed.overlay is not None
        sensor = server.sensors.sensors[SENSOR]
        ecg_last = sensor.attributes["ecg"].last_value
        assert ecg_last is not None
        drawn = feed.overlay.history.window(SENSOR, "ecg", ecg_last["timestamp"])
        # What the server stored last is what the overlay has for that time.
        assert drawn[1].tolist()[:1] == [ecg_last["payload"]]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await until(lambda: SENSOR not in server.sensors.sensors)
        assert feed.report()["measurements"] > 0


def test_publishing_needs_a_local_source() -> None:
    with pytest.raises(ValueError):
        SensorsConfig.model_validate(
            {
                "source": {"kind": "viewer", "viewer_token": "t"},
                "publish": {"sensor_id": SENSOR},
            }
        )


def test_cli_viewer_token_builds_a_vitals_overlay() -> None:
    args = argparse.Namespace(
        sensors=None, viewer_token="tok-1", overlay_sensor="polar-7"
    )
    config = sensors_option(args)
    assert isinstance(config, SensorsConfig)
    assert config.source.kind == "viewer"
    assert config.source.viewer_token == "tok-1"
    assert config.source.sensor_ids == ["polar-7"]
    assert config.overlay is not None
    kinds = [w.kind for w in config.overlay.widgets]
    assert kinds == ["badge", "sparkline", "waveform", "label"]
    bot = BotConfig(server_url="ws://127.0.0.1:1/socket", room_id="r", sensors=config)
    assert BotConfig.model_validate_json(bot.model_dump_json()) == bot


def test_cli_sensors_json_and_none() -> None:
    room = "0b6f6e3c-2f0e-4b8e-9d55-6a1f0c9e7d21"
    text = json.dumps({"source": {"kind": "room", "room_uuid": room}})
    args = argparse.Namespace(sensors=text, viewer_token=None, overlay_sensor=None)
    config = sensors_option(args)
    assert config.source.kind == "room"
    none = argparse.Namespace(sensors=None, viewer_token=None, overlay_sensor=None)
    assert sensors_option(none) is None
