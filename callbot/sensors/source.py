"""Where a bot's sensor data comes from: one config, three kinds of source.

- ``local``: produced on the bot's side, by the synthetic physiological
  generator or a replay of a recorded file;
- ``viewer``: live from ``viewer:data:{token}`` with a token handed to the bot;
- ``room``: the last values of a room's sensors, refreshed at a rate.

Every source runs until cancelled and hands lists of typed measurements to a
sink; duplicates are absorbed before the sink sees them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from callbot.phoenix.client import Socket
from callbot.sensors.measurements import Measurement
from callbot.sensors.replay import Replay, load_recording, play
from callbot.sensors.room import RoomSource
from callbot.sensors.synthetic import SyntheticConfig, SyntheticSensor
from callbot.sensors.viewer import ViewerSource

logger = logging.getLogger(__name__)

Sink = Callable[[list[Measurement]], None]


class SensorSource(Protocol):
    async def run(self, sink: Sink) -> None:
        """Feed ``sink`` until cancelled."""


class SourceConfig(BaseModel):
    """One sensor source of a bot."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["local", "viewer", "room"]
    # local: the synthetic generator, unless a recording is given.
    synthetic: SyntheticConfig = SyntheticConfig.model_validate({})
    replay_path: str | None = None
    replay_loop: bool = True
    replay_speed: float = Field(default=1.0, gt=0.0)
    # How often a local source hands over what it produced, in seconds.
    local_interval: float = Field(default=0.05, gt=0.0)
    # viewer: the token (out of band) and, optionally, the sensors to show.
    viewer_token: str | None = None
    sensor_ids: list[str] | None = None
    # room: the room's UUID and how often its last values are refreshed.
    room_uuid: str | None = None
    refresh_seconds: float = Field(default=5.0, gt=0.0)

    @model_validator(mode="after")
    def _complete(self) -> SourceConfig:
        if self.kind == "viewer" and not self.viewer_token:
            raise ValueError("a viewer source needs viewer_token")
        if self.kind == "room" and not self.room_uuid:
            raise ValueError("a room source needs room_uuid")
        return self

    @property
    def needs_socket(self) -> bool:
        return self.kind != "local"


class LocalSource:
    """The synthetic sensor or a recording, paced by the wall clock."""

    def __init__(
        self, config: SourceConfig, *, wall_clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config
        self._wall_clock = wall_clock

    async def run(self, sink: Sink) -> None:
        c = self.config
        now_ms = round(self._wall_clock() * 1000)
        if c.replay_path is not None:
            recording = load_recording(c.replay_path)
            replay = Replay(
                recording,
                self._wall_clock(),
                speed=c.replay_speed,
                loop=c.replay_loop,
                rebase_ms=now_ms,
            )
            logger.info("replaying %d records from %s", len(recording), c.replay_path)
            await play(replay, sink, self._wall_clock)
            return

        sensor = SyntheticSensor(c.synthetic, now_ms)
        logger.info("synthetic sensor %s started", c.synthetic.sensor_id)
        while True:
            await asyncio.sleep(c.local_interval)
            produced = sensor.advance(round(self._wall_clock() * 1000))
            if produced:
                sink(produced)


def open_source(config: SourceConfig, socket: Socket | None) -> SensorSource:
    """The source for ``config``; viewer and room sources need a socket."""
    if config.kind == "local":
        return LocalSource(config)
    if socket is None:
        raise ValueError(f"a {config.kind} source needs a socket")
    if config.kind == "viewer":
        assert config.viewer_token is not None
        return ViewerSource(socket, config.viewer_token, config.sensor_ids)
    assert config.room_uuid is not None
    return RoomSource(socket, config.room_uuid, config.refresh_seconds)
