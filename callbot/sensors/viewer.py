"""Live measurements from ``viewer:data:{token}`` (sensor-streams.md §3.1).

:class:`ViewerStream` is the sans-I/O part: ``sensor_batch`` payloads in,
typed measurements out, with unusable items dropped (and logged), waveform
samples that are not numbers dropped, and the server's repeated pushes
absorbed. :class:`ViewerSource` joins the channel with a token handed to the
bot and feeds a sink.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from callbot.phoenix.client import ChannelState, Socket
from callbot.sensors.measurements import (
    AttributeKind,
    Deduplicator,
    Generic,
    Measurement,
    attribute_kind,
    parse_sensor_batch,
)

logger = logging.getLogger(__name__)

Sink = Callable[[list[Measurement]], None]


class ViewerStream:
    """Turns ``sensor_batch`` pushes into new measurements."""

    def __init__(self, dedup_capacity: int = 4096) -> None:
        self._dedup = Deduplicator(dedup_capacity)
        self.batches = 0
        self.measurements = 0
        self.dropped = 0

    @property
    def duplicates(self) -> int:
        return self._dedup.duplicates

    def receive(self, payload: Any) -> list[Measurement]:
        """The new measurements of one push; bad items are dropped and logged."""
        self.batches += 1
        if not isinstance(payload, dict):
            logger.warning("sensor_batch dropped: payload is not an object")
            self.dropped += 1
            return []
        parsed = parse_sensor_batch(payload)
        for error in parsed.errors:
            self.dropped += 1
            logger.warning(
                "sensor_batch: dropped %s/%s: %s",
                error.sensor_id,
                error.attribute_id,
                error.reason,
            )

        kept: list[Measurement] = []
        for m in parsed.measurements:
            # A waveform sample that is not a number is parsed as generic; it
            # cannot be drawn or encoded, so it goes.
            if (
                isinstance(m, Generic)
                and attribute_kind(m.attribute_id) is AttributeKind.WAVEFORM
            ):
                self.dropped += 1
                logger.warning(
                    "sensor_batch: dropped %s/%s sample at %s: payload %r is not "
                    "a number",
                    m.sensor_id,
                    m.attribute_id,
                    m.timestamp,
                    m.payload,
                )
                continue
            kept.append(m)
        fresh = self._dedup.filter(kept)
        self.measurements += len(fresh)
        return fresh


class ViewerSource:
    """Joins ``viewer:data:{token}`` and feeds the sink until cancelled.

    Args:
        sensor_ids: sent as ``set_visible_sensors`` after every join; None
            leaves the server's choice (every sensor of the token).
    """

    def __init__(
        self,
        socket: Socket,
        token: str,
        sensor_ids: Sequence[str] | None = None,
    ) -> None:
        self.socket = socket
        self.token = token
        self.sensor_ids = list(sensor_ids) if sensor_ids is not None else None
        self.stream = ViewerStream()

    async def run(self, sink: Sink) -> None:
        channel = self.socket.channel(f"viewer:data:{self.token}")

        def on_batch(payload: Any) -> None:
            fresh = self.stream.receive(payload)
            if fresh:
                sink(fresh)

        def on_state(state: ChannelState, info: dict[str, Any] | None) -> None:
            if state is ChannelState.JOINED and self.sensor_ids is not None:
                channel.push_nowait(
                    "set_visible_sensors", {"sensor_ids": self.sensor_ids}
                )

        channel.on("sensor_batch", on_batch)
        channel.on_state(on_state)
        await channel.join()
        logger.info("viewer channel joined (%s sensors)", self.sensor_ids or "all")
        try:
            await asyncio.Event().wait()
        finally:
            if channel.state is ChannelState.JOINED:
                await asyncio.shield(channel.leave(timeout=1.0))
