"""The bot as a Sensocto sensor: ``sensocto:sensor:{sensor_id}`` (§2).

Joins with the nine keys (and ``room_id``), registers and unregisters
attributes, renames the connector, and sends measurements as the server's
``backpressure_config`` says, through :class:`BatchPolicy`: by batch size or
window, at once when attention becomes high, nothing while paused (only the
newest values are kept and sent on unpause), and a last flush on close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from callbot.errors import ChannelError, SensorDataError
from callbot.phoenix.client import Channel, ChannelState, Socket
from callbot.sensors.backpressure import BackpressureConfig, BatchPolicy, Send
from callbot.sensors.measurements import ATTRIBUTE_ID, Measurement

logger = logging.getLogger(__name__)


class PublisherConfig(BaseModel):
    """Who the bot is as a sensor; the join's nine keys come from here."""

    model_config = ConfigDict(frozen=True)

    sensor_id: str
    sensor_name: str = "callbot sensor"
    sensor_type: str = "heartrate"
    connector_id: str = "callbot"
    connector_name: str = "callbot"
    # "missing" is accepted where the server allows it (Sensocto's dev config).
    bearer_token: str = "missing"
    room_id: str | None = None
    # attribute id -> metadata, registered with the join.
    attributes: dict[str, dict[str, Any]] = Field(default_factory=dict)
    sampling_rate: int = 1
    batch_size: int = 1
    # How much of each waveform is kept while paused.
    paused_waveform_seconds: float = Field(default=2.0, gt=0.0)

    def join_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "connector_id": self.connector_id,
            "connector_name": self.connector_name,
            "sensor_id": self.sensor_id,
            "sensor_name": self.sensor_name,
            "sensor_type": self.sensor_type,
            "attributes": {k: dict(v) for k, v in self.attributes.items()},
            "sampling_rate": self.sampling_rate,
            "batch_size": self.batch_size,
            "bearer_token": self.bearer_token,
        }
        if self.room_id:
            params["room_id"] = self.room_id
        return params


class SensorPublisher:
    """Publishes measurements on one sensor channel.

    Args:
        clock: monotonic seconds; the batch windows are measured on it.
    """

    def __init__(
        self,
        socket: Socket,
        config: PublisherConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.socket = socket
        self.config = config
        self.policy = BatchPolicy(
            paused_waveform_seconds=config.paused_waveform_seconds
        )
        self.configs: list[BackpressureConfig] = []
        # The most recent sends, newest last.
        self.sent: deque[Send] = deque(maxlen=1024)
        self._clock = clock
        self._channel: Channel | None = None
        self._registered: dict[str, dict[str, Any]] = {}
        self._wake = asyncio.Event()
        self._timer: asyncio.Task[None] | None = None

    @property
    def topic(self) -> str:
        return f"sensocto:sensor:{self.config.sensor_id}"

    async def start(self, timeout: float | None = 10.0) -> None:
        """Join the sensor channel (``ReplyError("unauthorized")`` on refusal)."""
        channel = self.socket.channel(self.topic, self.config.join_params())
        channel.on("backpressure_config", self._on_config)
        channel.on_state(self._on_state)
        self._channel = channel
        await channel.join(timeout)
        self._timer = asyncio.get_running_loop().create_task(self._run_timer())
        logger.info("sensor %s: publishing", self.config.sensor_id)

    def publish(self, measurements: Iterable[Measurement]) -> None:
        """Queue measurements; what is due goes out at once."""
        self._send(self.policy.add(measurements, self._clock()))
        self._wake.set()

    def poll(self) -> None:
        """Send what the batch window makes due now (the timer does this too)."""
        self._send(self.policy.poll(self._clock()))

    async def register(self, attribute_id: str, metadata: dict[str, Any]) -> None:
        """``update_attributes`` ``register`` (repeated after every rejoin)."""
        self._check_attribute(attribute_id)
        self._registered[attribute_id] = dict(metadata)
        self._update("register", attribute_id, metadata)

    async def unregister(self, attribute_id: str) -> None:
        """``update_attributes`` ``unregister``."""
        self._check_attribute(attribute_id)
        self._registered.pop(attribute_id, None)
        self._update("unregister", attribute_id, {})

    async def update_connector(self, connector_name: str, timeout: float = 5.0) -> str:
        """Rename the connector; returns the name the server stored."""
        channel = self._joined()
        reply = await channel.push(
            "update_connector", {"connector_name": connector_name}, timeout
        )
        return str(reply["connector_name"])

    async def close(self) -> None:
        """Flush what may be sent (nothing while paused), then leave."""
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
            self._timer = None
        channel = self._channel
        if channel is None:
            return
        if channel.state is ChannelState.JOINED:
            self._send(self.policy.close(self._clock()))
        with contextlib.suppress(ChannelError):
            await channel.leave(timeout=2.0)
        logger.info(
            "sensor %s: closed after %d items sent, %d dropped while paused",
            self.config.sensor_id,
            self.policy.sent_items,
            self.policy.dropped,
        )

    # -- internals ---------------------------------------------------------------

    def _joined(self) -> Channel:
        if self._channel is None or self._channel.state is not ChannelState.JOINED:
            raise ChannelError(f"{self.topic} is not joined")
        return self._channel

    @staticmethod
    def _check_attribute(attribute_id: str) -> None:
        if not ATTRIBUTE_ID.match(attribute_id):
            raise SensorDataError(f"invalid attribute_id {attribute_id!r}")

    def _update(self, action: str, attribute_id: str, metadata: dict[str, Any]) -> None:
        # The server replies only to a refusal; checked above, so no wait.
        self._joined().push_nowait(
            "update_attributes",
            {"action": action, "attribute_id": attribute_id, "metadata": metadata},
        )

    def _on_config(self, payload: Any) -> None:
        try:
            config = BackpressureConfig.model_validate(payload)
        except ValidationError as exc:
            logger.warning("sensor %s: bad backpressure_config: %s", self.topic, exc)
            return
        self.configs.append(config)
        self._send(self.policy.set_config(config, self._clock()))
        self._wake.set()

    def _on_state(self, state: ChannelState, info: dict[str, Any] | None) -> None:
        if state is not ChannelState.JOINED or self._channel is None:
            return
        # A rejoin starts a fresh sensor process: register again.
        for attribute_id, metadata in self._registered.items():
            self._update("register", attribute_id, metadata)

    def _send(self, sends: list[Send]) -> None:
        channel = self._channel
        for send in sends:
            if channel is None or channel.state is not ChannelState.JOINED:
                # Known limit: a send due while the channel is down is lost.
                logger.warning(
                    "sensor %s: %d items lost, channel not joined",
                    self.config.sensor_id,
                    len(send.items),
                )
                continue
            channel.push_nowait(send.event, send.payload)
            self.sent.append(send)
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "sensor %s > %s (%d items)",
                    self.config.sensor_id,
                    send.event,
                    len(send.items),
                )

    async def _run_timer(self) -> None:
        while True:
            deadline = self.policy.next_deadline()
            self._wake.clear()
            if deadline is None:
                await self._wake.wait()
                continue
            delay = deadline - self._clock()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
                continue
            self.poll()
