"""``sensocto:sensor:{sensor_id}``: a publishing sensor (sensor-streams.md §2)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from callbot.server.channel import (
    Channel,
    ChannelCrash,
    ExitReason,
    JoinRefused,
    Reply,
    Transport,
)
from callbot.server.pubsub import PubSub
from callbot.server.sensors import (
    ATTRIBUTE_ID,
    SENSOR_JOIN_KEYS,
    SENSOR_TOPIC_PREFIX,
    SensorRegistry,
)

logger = logging.getLogger(__name__)

TOPIC_PREFIX = SENSOR_TOPIC_PREFIX
MEASUREMENT_KEYS = ("attribute_id", "payload", "timestamp")


def _valid_measurement(item: object) -> bool:
    return (
        isinstance(item, dict)
        and all(k in item for k in MEASUREMENT_KEYS)
        and isinstance(item["attribute_id"], str)
        and ATTRIBUTE_ID.match(item["attribute_id"]) is not None
    )


class SensorChannel(Channel):
    """One connection of a sensor; it publishes and gets backpressure."""

    def __init__(
        self,
        topic: str,
        join_ref: str | None,
        transport: Transport,
        pubsub: PubSub,
        *,
        registry: SensorRegistry,
    ) -> None:
        super().__init__(topic, join_ref, transport, pubsub)
        self.registry = registry
        self.sensor_id = topic[len(TOPIC_PREFIX) :]
        self.connected = False

    def join(self, params: Any) -> dict[str, Any]:
        # The join clause matches only with all nine keys and the topic's id.
        if not isinstance(params, dict) or any(
            k not in params for k in SENSOR_JOIN_KEYS
        ):
            raise ChannelCrash("no join clause: a sensor join key is missing")
        if params["sensor_id"] != self.sensor_id:
            raise ChannelCrash("no join clause: sensor_id is not the topic's")
        if not self.registry.authorized(params["bearer_token"]):
            raise JoinRefused({"reason": "unauthorized"})
        self.registry.connect(params)
        self.connected = True
        logger.info("sensor %s: channel joined", self.sensor_id)
        return {}

    def start(self) -> None:
        # After the join reply, before anything else on this topic.
        self.push("backpressure_config", self.registry.config_for(self.sensor_id))
        super().start()

    def terminate(self, reason: ExitReason) -> None:
        if self.connected:
            self.connected = False
            self.registry.disconnect(self.sensor_id)

    def handle_in(self, event: str, payload: Any) -> Reply | None:
        handler = self._handlers().get(event)
        # Unlike the call channel, this one has a catch-all clause.
        return handler(payload) if handler is not None else None

    def _handlers(self) -> dict[str, Callable[[Any], Reply | None]]:
        return {
            "measurement": self._measurement,
            "measurements_batch": self._measurements_batch,
            "update_attributes": self._update_attributes,
            "update_connector": self._update_connector,
            "ping": self._ping,
            "shout": self._shout,
        }

    def _measurement(self, payload: Any) -> Reply | None:
        if not isinstance(payload, dict) or any(
            k not in payload for k in MEASUREMENT_KEYS
        ):
            return None
        if not _valid_measurement(payload):
            return Reply.error("invalid_attribute_id")
        self.registry.store(self.sensor_id, [payload])
        return None

    def _measurements_batch(self, payload: Any) -> Reply | None:
        if not isinstance(payload, list):
            return None
        failed = sum(1 for item in payload if not _valid_measurement(item))
        if failed:
            return Reply("error", {"reason": "invalid_batch", "failed_count": failed})
        self.registry.store(self.sensor_id, payload)
        return None

    def _update_attributes(self, payload: Any) -> Reply | None:
        if not isinstance(payload, dict) or any(
            k not in payload for k in ("action", "attribute_id", "metadata")
        ):
            return None
        action, attribute_id = payload["action"], payload["attribute_id"]
        if action not in ("register", "unregister"):
            return Reply.error("invalid_action")
        if not isinstance(attribute_id, str) or not ATTRIBUTE_ID.match(attribute_id):
            return Reply.error("invalid_attribute_id")
        metadata = payload["metadata"]
        if not isinstance(metadata, dict):
            return None
        if action == "register":
            self.registry.register_attribute(self.sensor_id, attribute_id, metadata)
        else:
            self.registry.unregister_attribute(self.sensor_id, attribute_id)
        return None

    def _update_connector(self, payload: Any) -> Reply | None:
        name = payload.get("connector_name") if isinstance(payload, dict) else None
        if not isinstance(name, str) or not 1 <= len(name.encode()) <= 100:
            return Reply.error("invalid_connector_name")
        sensor = self.registry.sensors.get(self.sensor_id)
        if sensor is not None:
            sensor.connector_name = name
        return Reply.ok({"connector_name": name})

    def _ping(self, payload: Any) -> Reply | None:
        # Known limit: a non-object ping payload is answered with {}.
        return Reply.ok(payload if isinstance(payload, dict) else {})

    def _shout(self, payload: Any) -> Reply | None:
        self.broadcast("shout", payload if isinstance(payload, dict) else {})
        return None


def sensor_channel_factory(
    registry: SensorRegistry,
) -> Callable[[str, str | None, Any, PubSub], Channel]:
    def factory(
        topic: str, join_ref: str | None, transport: Any, pubsub: PubSub
    ) -> Channel:
        return SensorChannel(topic, join_ref, transport, pubsub, registry=registry)

    return factory
