"""Plugins hear the bot's sensor feed through ``on_measurements``."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from callbot.bot.bot import Bot
from callbot.bot.config import BotConfig, PluginSpec
from callbot.bot.plugin import Plugin
from callbot.bot.sensor_feed import SensorsConfig
from callbot.sensors.measurements import Measurement, Scalar, Waveform

SENSOR = "hr-1"


class Listener(Plugin):
    name = "listener"

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.heard: list[Measurement] = []

    def on_measurements(self, measurements: Sequence[Measurement]) -> None:
        self.heard.extend(measurements)


class Deaf(Plugin):
    name = "deaf"


async def test_the_bots_local_source_reaches_the_plugins_that_listen() -> None:
    config = BotConfig(
        server_url="ws://127.0.0.1:1/socket",
        room_id="lobby",
        sensors=SensorsConfig.model_validate(
            {
                "source": {
                    "kind": "local",
                    "synthetic": {"sensor_id": SENSOR},
                    "local_interval": 0.02,
                }
            }
        ),
        plugins=[PluginSpec(name="deaf"), PluginSpec(name="listener")],
    )
    bot = Bot(config, plugin_registry={"listener": Listener, "deaf": Deaf})
    deaf, listener = bot.plugins._plugins
    assert isinstance(listener.plugin, Listener)
    heard = listener.plugin.heard
    feed = bot.sensor_feed
    assert feed is not None

    bot.plugins.start()
    task = asyncio.create_task(feed.run())
    async with asyncio.timeout(5.0):
        while not any(isinstance(m, Scalar) for m in heard):
            await asyncio.sleep(0.02)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    # A plugin without the hook is never queued the measurements.
    assert deaf.queue.qsize() == 0
    await bot.plugins.close(timeout=1.0)

    # Every batch the feed produced reached the listener, in order.
    assert len(heard) == feed.measurements
    assert {m.sensor_id for m in heard} == {SENSOR}
    ecg = [m for m in heard if isinstance(m, Waveform) and m.attribute_id == "ecg"]
    starts = [m.timestamps[0] for m in ecg]
    assert len(ecg) >= 2 and starts == sorted(starts)
    rates = [m.payload for m in heard if isinstance(m, Scalar)]
    assert rates and all(40.0 <= bpm <= 120.0 for bpm in rates)
    assert bot.plugins.errors == 0
