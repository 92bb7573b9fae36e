"""``viewer:data:{token}``: live measurements for a viewer (sensor-streams.md §3.1).

Measurements of the token's sensors are buffered and pushed as one
``sensor_batch`` per flush interval of the viewer's quality (high 64 ms,
medium 128 ms, low 250 ms, minimal 500 ms, paused never), only when there is
something to send. ``ecg``, ``respiration``, ``button`` and ``buttons`` carry
every measurement since the last flush; other attributes only the latest.
With ``delta_encoding`` on, ECG and respiration lists of two or more numeric
samples are replaced by the binary delta encoding.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from callbot.errors import SensorDataError
from callbot.sensors import delta
from callbot.server.channel import Channel, JoinRefused, Reply, Transport
from callbot.server.clock import Timer
from callbot.server.pubsub import PubSub, ServerEvent
from callbot.server.sensors import SensorRegistry, ViewerSession

logger = logging.getLogger(__name__)

TOPIC_PREFIX = "viewer:"
DATA_PREFIX = "viewer:data:"
FLUSH_INTERVAL_MS: dict[str, int | None] = {
    "high": 64,
    "medium": 128,
    "low": 250,
    "minimal": 500,
    "paused": None,
}
LIST_ATTRIBUTES = frozenset({"ecg", "respiration", "button", "buttons"})
DELTA_ATTRIBUTES = frozenset({"ecg", "respiration"})
_FLUSH = "__flush__"


def batch_value(
    attribute_id: str, items: list[dict[str, Any]], delta_encoding: bool
) -> Any:
    """One attribute's value in a ``sensor_batch``."""
    if attribute_id not in LIST_ATTRIBUTES:
        return items[-1]
    if delta_encoding and attribute_id in DELTA_ATTRIBUTES and len(items) >= 2:
        try:
            return delta.encode_item([(i["timestamp"], i["payload"]) for i in items])
        except SensorDataError as exc:
            # Non-numeric samples cannot be encoded; the list goes as it is.
            logger.debug("not delta-encoding %s: %s", attribute_id, exc)
    return items


class ViewerChannel(Channel):
    """One viewer's live data path."""

    def __init__(
        self,
        topic: str,
        join_ref: str | None,
        transport: Transport,
        pubsub: PubSub,
        *,
        registry: SensorRegistry,
        delta_encoding: bool,
    ) -> None:
        super().__init__(topic, join_ref, transport, pubsub)
        self.registry = registry
        self.delta_encoding = delta_encoding
        self.session: ViewerSession | None = None
        self.visible: set[str] | None = None
        self._buffer: dict[str, dict[str, list[dict[str, Any]]]] = {}
        self._timer: Timer | None = None
        self.batches_sent = 0

    def join(self, params: Any) -> dict[str, Any]:
        if not self.topic.startswith(DATA_PREFIX):
            raise JoinRefused({"reason": "invalid_topic"})
        session = self.registry.viewer_session(self.topic[len(DATA_PREFIX) :])
        if session is None:
            raise JoinRefused({"reason": "unauthorized"})
        self.session = session
        for sensor_id in session.sensor_ids:
            self.pubsub.subscribe(f"data:{sensor_id}", self)
        logger.info(
            "viewer joined: %d sensors, quality %s",
            len(session.sensor_ids),
            session.quality,
        )
        return {}

    def start(self) -> None:
        super().start()
        self._arm()

    def terminate(self, reason: object) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def handle_in(self, event: str, payload: Any) -> Reply | None:
        if event == "set_visible_sensors" and isinstance(payload, dict):
            ids = payload.get("sensor_ids")
            if isinstance(ids, list):
                self.visible = {i for i in ids if isinstance(i, str)}
        return None

    def handle_info(self, event: ServerEvent) -> None:
        if event.event == _FLUSH:
            self._flush()
            self._arm()
            return
        if event.event != "measurements":
            return
        sensor_id = event.topic[len("data:") :]
        if self.visible is not None and sensor_id not in self.visible:
            return
        attributes = self._buffer.setdefault(sensor_id, {})
        for item in event.payload["items"]:
            attributes.setdefault(item["attribute_id"], []).append(item)

    def _arm(self) -> None:
        assert self.session is not None
        interval = FLUSH_INTERVAL_MS[self.session.quality]
        if interval is None:
            # Paused: nothing is pushed; look again at the slowest interval.
            interval = FLUSH_INTERVAL_MS["minimal"]
            assert interval is not None
            self._buffer.clear()
        self._timer = self.registry.clock.call_later(interval, self._tick)

    def _tick(self) -> None:
        self.deliver(ServerEvent(self.topic, _FLUSH, {}), duplicate=False)

    def _flush(self) -> None:
        assert self.session is not None
        if self.session.quality == "paused" or not self._buffer:
            self._buffer.clear()
            return
        batch = {
            sensor_id: {
                attribute_id: batch_value(attribute_id, items, self.delta_encoding)
                for attribute_id, items in attributes.items()
            }
            for sensor_id, attributes in self._buffer.items()
        }
        self._buffer = {}
        self.batches_sent += 1
        self.push("sensor_batch", {"batch": batch})


def viewer_channel_factory(
    registry: SensorRegistry, delta_encoding: Callable[[], bool]
) -> Callable[[str, str | None, Any, PubSub], Channel]:
    def factory(
        topic: str, join_ref: str | None, transport: Any, pubsub: PubSub
    ) -> Channel:
        return ViewerChannel(
            topic,
            join_ref,
            transport,
            pubsub,
            registry=registry,
            delta_encoding=delta_encoding(),
        )

    return factory
