"""A room's sensors and their last values from ``room:{room_uuid}`` (§3.2).

The room channel pushes ``room_state`` once per join and ``sensor_added``
when a sensor attaches; each sensor carries the ``last_value`` of its
attributes. That is all it gives, so :class:`RoomSource` rejoins at a
configured rate to refresh the values: coarse, but it needs no token.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from callbot.errors import CallbotError
from callbot.phoenix.client import ChannelState, Socket
from callbot.sensors.measurements import Deduplicator, Measurement, parse_room_sensor

logger = logging.getLogger(__name__)

Sink = Callable[[list[Measurement]], None]


class RoomSensors:
    """Turns ``room_state`` and ``sensor_added`` pushes into new measurements."""

    def __init__(self, dedup_capacity: int = 4096) -> None:
        self._dedup = Deduplicator(dedup_capacity)
        self.sensors: dict[str, dict[str, Any]] = {}
        self.dropped = 0

    def _sensor(self, sensor: Any) -> list[Measurement]:
        if not isinstance(sensor, dict) or not isinstance(sensor.get("sensor_id"), str):
            self.dropped += 1
            logger.warning("room: dropped a malformed sensor %r", sensor)
            return []
        self.sensors[sensor["sensor_id"]] = sensor
        parsed = parse_room_sensor(sensor)
        for error in parsed.errors:
            self.dropped += 1
            logger.warning(
                "room: dropped %s/%s: %s",
                error.sensor_id,
                error.attribute_id,
                error.reason,
            )
        return self._dedup.filter(parsed.measurements)

    def room_state(self, payload: Any) -> list[Measurement]:
        sensors = payload.get("sensors") if isinstance(payload, dict) else None
        if not isinstance(sensors, list):
            self.dropped += 1
            logger.warning("room_state dropped: no sensors list")
            return []
        out: list[Measurement] = []
        for sensor in sensors:
            out += self._sensor(sensor)
        return out

    def sensor_added(self, payload: Any) -> list[Measurement]:
        sensor = payload.get("sensor") if isinstance(payload, dict) else None
        return self._sensor(sensor)

    def sensor_removed(self, payload: Any) -> None:
        if isinstance(payload, dict) and isinstance(payload.get("sensor_id"), str):
            self.sensors.pop(payload["sensor_id"], None)


class RoomSource:
    """Joins ``room:{room_uuid}``, rejoining every ``refresh_seconds``."""

    def __init__(
        self, socket: Socket, room_uuid: str, refresh_seconds: float = 5.0
    ) -> None:
        if refresh_seconds <= 0:
            raise ValueError("refresh_seconds must be positive")
        self.socket = socket
        self.room_uuid = room_uuid
        self.refresh_seconds = refresh_seconds
        self.room = RoomSensors()
        self.refreshes = 0

    async def run(self, sink: Sink) -> None:
        while True:
            channel = self.socket.channel(f"room:{self.room_uuid}")

            def emit(measurements: list[Measurement]) -> None:
                if measurements:
                    sink(measurements)

            channel.on("room_state", lambda p: emit(self.room.room_state(p)))
            channel.on("sensor_added", lambda p: emit(self.room.sensor_added(p)))
            channel.on("sensor_removed", self.room.sensor_removed)
            try:
                await channel.join()
                self.refreshes += 1
                await asyncio.sleep(self.refresh_seconds)
            except CallbotError as exc:
                logger.warning("room %s: %s", self.room_uuid, exc)
                await asyncio.sleep(self.refresh_seconds)
            finally:
                if channel.state is not ChannelState.CLOSED:
                    await asyncio.shield(channel.leave(timeout=1.0))
