"""A bot's sensor data: one source, drawn by overlays, optionally published.

The feed runs beside the call and independently of it: its own socket to the
server for viewer and room sources and for publishing, restarted after a
failure, so that a call recovery never interrupts the data and vice versa.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, MutableMapping
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from callbot.errors import CallbotError
from callbot.phoenix.client import Socket
from callbot.sensors.measurements import Measurement
from callbot.sensors.publisher import PublisherConfig, SensorPublisher
from callbot.sensors.source import SourceConfig, open_source
from media.overlays.config import OverlayConfig
from media.overlays.overlay import SensorOverlay

logger = logging.getLogger(__name__)

RESTART_DELAY = 2.0


class SensorsConfig(BaseModel):
    """A bot's sensor source, its overlays and what it publishes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: SourceConfig
    overlay: OverlayConfig | None = None
    # Publish the source's measurements as this sensor (local sources only).
    publish: PublisherConfig | None = None
    # The socket for viewer/room sources and publishing; the bot's if None.
    server_url: str | None = None

    @model_validator(mode="after")
    def _publish_local_only(self) -> SensorsConfig:
        if self.publish is not None and self.source.kind != "local":
            raise ValueError("only a local source can be published")
        return self


class SensorFeed:
    """Runs the source into the overlay and the publisher until cancelled.

    Args:
        on_measurements: also given every batch (the bot's plugins).
    """

    def __init__(
        self,
        config: SensorsConfig,
        server_url: str,
        log: logging.Logger | logging.LoggerAdapter[logging.Logger] = logger,
        *,
        on_measurements: Callable[[list[Measurement]], None] | None = None,
    ) -> None:
        self.config = config
        self.on_measurements = on_measurements
        self.server_url = config.server_url or server_url
        self.log = log
        self.overlay = SensorOverlay(config.overlay) if config.overlay else None
        self.publisher: SensorPublisher | None = None
        self.measurements = 0

    def _sink(self, measurements: list[Measurement]) -> None:
        self.measurements += len(measurements)
        if self.overlay is not None:
            self.overlay.feed(measurements)
        if self.publisher is not None:
            self.publisher.publish(measurements)
        if self.on_measurements is not None:
            self.on_measurements(measurements)

    async def run(self) -> None:
        while True:
            try:
                await self._run_once()
                return
            except CallbotError as exc:
                self.log.warning("sensor feed failed, restarting: %s", exc)
            await asyncio.sleep(RESTART_DELAY)

    async def _run_once(self) -> None:
        socket: Socket | None = None
        if self.config.source.needs_socket or self.config.publish is not None:
            socket = Socket(self.server_url)
            await socket.connect()
        try:
            if self.config.publish is not None:
                assert socket is not None
                self.publisher = SensorPublisher(socket, self.config.publish)
                await self.publisher.start()
            source = open_source(self.config.source, socket)
            self.log.info("sensor feed: %s source started", self.config.source.kind)
            await source.run(self._sink)
        finally:
            await asyncio.shield(self._close(socket))

    async def _close(self, socket: Socket | None) -> None:
        publisher, self.publisher = self.publisher, None
        if publisher is not None:
            with contextlib.suppress(CallbotError):
                await publisher.close()
        if socket is not None:
            await socket.close()

    def report(self) -> MutableMapping[str, Any]:
        """Counters for the bot's stats."""
        out: dict[str, Any] = {"kind": self.config.source.kind}
        out["measurements"] = self.measurements
        return out
