"""Sensors of the reference server: registry, attention, load and tokens.

Holds what Sensocto's sensor processes, attention tracker, load monitor and
token verifiers hold, in memory: every connected sensor with its attributes
and last values, the attention level of each sensor, the system load level
and the memory protection switch. Each change of those is pushed to the
sensor's channels as a full ``backpressure_config`` (sensor-streams.md §2.4).
Measurements are published on PubSub ``data:<sensor_id>`` for viewers, and
room membership changes on ``room:<room_id>``.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass, field
from typing import Any, Literal

from callbot.server.clock import Clock
from callbot.server.pubsub import PubSub, ServerEvent
from callbot.server.settings import ServerSettings

logger = logging.getLogger(__name__)

AttentionLevel = Literal["high", "medium", "low", "none"]
ATTENTION_LEVELS = ("high", "medium", "low", "none")
SYSTEM_LOADS = ("normal", "elevated", "high", "critical")
VIEWER_QUALITIES = ("high", "medium", "low", "minimal", "paused")

ATTRIBUTE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
SENSOR_TOPIC_PREFIX = "sensocto:sensor:"

BASE_WINDOW_MS = {"high": 100, "medium": 500, "low": 2000, "none": 5000}
BASE_BATCH_SIZE = {"high": 1, "medium": 5, "low": 10, "none": 20}
LOAD_MULTIPLIER = {"normal": 1.0, "elevated": 1.5, "high": 3.0, "critical": 5.0}
MEMORY_PROTECTION_FACTOR = 5.0

# Attribute types the server infers from an id (SafeKeys' table, abridged).
_TYPE_BY_ID = {
    "ecg": "ecg",
    "heart": "ecg",
    "heartbeat": "ecg",
    "heartrate": "heartrate",
    "heart_rate": "heartrate",
    "hr": "heartrate",
    "bpm": "heartrate",
    "respiration": "respiration",
    "breathing": "respiration",
    "breath": "respiration",
    "hrv": "hrv",
    "battery": "battery",
    "geolocation": "geolocation",
    "location": "geolocation",
    "gps": "geolocation",
    "imu": "imu",
    "accelerometer": "imu",
    "gyroscope": "imu",
    "motion": "imu",
    "button": "button",
    "buttons": "button",
    "temperature": "temperature",
    "skeleton": "skeleton",
    "pose": "skeleton",
}

# The nine keys the sensor channel's join clause matches on.
SENSOR_JOIN_KEYS = (
    "connector_id",
    "connector_name",
    "sensor_id",
    "sensor_name",
    "sensor_type",
    "attributes",
    "sampling_rate",
    "batch_size",
    "bearer_token",
)


def inferred_type(attribute_id: str, payload: Any = None) -> str:
    """The attribute type the server gives an unknown attribute."""
    known = _TYPE_BY_ID.get(attribute_id.lower())
    if known is not None:
        return known
    if isinstance(payload, dict) and {"latitude", "longitude"} <= payload.keys():
        return "geolocation"
    return "generic"


def backpressure_config(
    attention: str, system_load: str, memory_protection: bool, timestamp: int
) -> dict[str, Any]:
    """The eight-field ``backpressure_config`` for these inputs."""
    multiplier = LOAD_MULTIPLIER.get(system_load, 1.0)
    window = int(BASE_WINDOW_MS[attention] * multiplier)
    if memory_protection:
        window = int(window * MEMORY_PROTECTION_FACTOR)
        multiplier *= MEMORY_PROTECTION_FACTOR
    paused = attention in ("low", "none") and (
        memory_protection or system_load == "critical"
    )
    return {
        "attention_level": attention,
        "system_load": system_load,
        "memory_protection_active": memory_protection,
        "paused": paused,
        "recommended_batch_window": window,
        "recommended_batch_size": BASE_BATCH_SIZE[attention],
        "load_multiplier": multiplier,
        "timestamp": timestamp,
    }


def imu_payload(payload: str) -> dict[str, Any] | None:
    """``"ts,ax,ay,az,rx,ry,rz[,...]"`` as the server stores it, or None."""
    fields = payload.split(",")
    if len(fields) < 7:
        return None
    try:
        ax, ay, az, rx, ry, rz = (float(f) for f in fields[1:7])
    except ValueError:
        return None
    return {
        "accelerometer": {"x": ax, "y": ay, "z": az},
        "gyroscope": {"x": rx, "y": ry, "z": rz},
    }


@dataclass
class Attribute:
    attribute_id: str
    attribute_type: str
    metadata: dict[str, Any] = field(default_factory=dict)
    last_value: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.attribute_id,
            "attribute_type": self.attribute_type,
            "attribute_name": self.attribute_id,
            "last_value": self.last_value,
        }


@dataclass
class Sensor:
    """One sensor process: identity, attributes, connections, attention."""

    sensor_id: str
    sensor_name: str
    sensor_type: str
    connector_id: Any
    connector_name: str
    room_id: str | None = None
    attributes: dict[str, Attribute] = field(default_factory=dict)
    connections: int = 0
    attention: AttentionLevel = "none"
    measurements: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "sensor_id": self.sensor_id,
            "sensor_name": self.sensor_name,
            "sensor_type": self.sensor_type,
            "connector_id": self.connector_id,
            "connector_name": self.connector_name,
            "activity_status": "active",
            "attributes": [a.to_json() for a in self.attributes.values()],
        }


def unknown_sensor_json(sensor_id: str) -> dict[str, Any]:
    """How an unreachable sensor is reported in ``room_state``."""
    return {
        "sensor_id": sensor_id,
        "sensor_name": "Unknown",
        "sensor_type": "generic",
        "connector_id": None,
        "connector_name": "Unknown",
        "activity_status": "offline",
        "attributes": [],
    }


@dataclass
class ViewerSession:
    """What a lobby LiveView registered with the lens: its sensors and quality."""

    token: str
    sensor_ids: list[str]
    quality: str
    issued_ms: int


class SensorRegistry:
    """Every sensor of the server and the levels that shape its backpressure."""

    def __init__(self, settings: ServerSettings, clock: Clock, pubsub: PubSub) -> None:
        self.settings = settings
        self.clock = clock
        self.pubsub = pubsub
        self.sensors: dict[str, Sensor] = {}
        self.system_load = "normal"
        self.memory_protection = False
        self._attention: dict[str, AttentionLevel] = {}
        self._bearer_tokens: dict[str, str] = {}
        self._guests: dict[str, str] = {}
        self._users: dict[str, str] = {}
        self._viewers: dict[str, ViewerSession] = {}

    def now_ms(self) -> int:
        """Server wall clock in ms since the epoch."""
        return int(self.clock.utc_now().timestamp() * 1000)

    # -- tokens (development only) --------------------------------------------

    def dev_mint_bearer_token(self, user_id: str) -> str:
        """Development only: a sensor bearer token this server accepts."""
        token = f"dev-bearer.{secrets.token_urlsafe(16)}"
        self._bearer_tokens[token] = user_id
        return token

    def dev_add_guest(self, guest_id: str) -> str:
        """Development only: a ``guest:<id>:<token>`` bearer token."""
        token = secrets.token_urlsafe(12)
        self._guests[guest_id] = token
        return f"guest:{guest_id}:{token}"

    def dev_mint_user_token(self, user_id: str) -> str:
        """Development only: a socket ``token`` param that identifies a user."""
        token = f"dev-user.{secrets.token_urlsafe(16)}"
        self._users[token] = user_id
        return token

    def dev_mint_viewer_token(
        self, sensor_ids: list[str], quality: str = "high"
    ) -> str:
        """Development only: a ``viewer:data`` token, as a lobby LiveView gets one.

        The real server signs the LiveView's socket id and only that page sees
        it; here the token itself carries the sensors and quality the LiveView
        would have registered with the PriorityLens.
        """
        if quality not in VIEWER_QUALITIES:
            raise ValueError(f"unknown quality {quality!r}")
        token = f"dev-viewer.{secrets.token_urlsafe(16)}"
        self._viewers[token] = ViewerSession(
            token, list(sensor_ids), quality, self.clock.monotonic_ms()
        )
        return token

    def viewer_session(self, token: str) -> ViewerSession | None:
        """The session of a valid, unexpired viewer token."""
        session = self._viewers.get(token)
        if session is None:
            return None
        max_age_ms = self.settings.viewer_token_max_age_s * 1000
        if self.clock.monotonic_ms() - session.issued_ms > max_age_ms:
            return None
        return session

    def set_viewer_quality(self, token: str, quality: str) -> None:
        """Test control: the LiveView changed its quality level."""
        if quality not in VIEWER_QUALITIES:
            raise ValueError(f"unknown quality {quality!r}")
        session = self._viewers.get(token)
        if session is None:
            raise LookupError("unknown viewer token")
        session.quality = quality

    def user_for_socket_token(self, token: str | None) -> str:
        """The socket's user id; ``"anonymous"`` without a known token."""
        if token is None:
            return "anonymous"
        return self._users.get(token, "anonymous")

    def authorized(self, bearer_token: object) -> bool:
        """The sensor channel's bearer token check."""
        if not isinstance(bearer_token, str) or not bearer_token:
            return False
        if bearer_token == "missing":
            return self.settings.allow_missing_token
        if bearer_token.startswith("guest:"):
            parts = bearer_token.split(":", 2)
            if len(parts) != 3:
                return False
            guest_id, token = parts[1], parts[2]
            return self._guests.get(guest_id) == token
        return bearer_token in self._bearer_tokens

    # -- sensor processes ------------------------------------------------------

    def connect(self, params: dict[str, Any]) -> Sensor:
        """A sensor channel joined; starts or reuses the sensor process."""
        sensor_id = params["sensor_id"]
        sensor = self.sensors.get(sensor_id)
        if sensor is None:
            sensor = Sensor(
                sensor_id=sensor_id,
                sensor_name=str(params["sensor_name"]),
                sensor_type=str(params["sensor_type"]),
                connector_id=params["connector_id"],
                connector_name=str(params["connector_name"]),
                attention=self._attention.get(sensor_id, "none"),
            )
            attributes = params["attributes"]
            if isinstance(attributes, dict):
                for attribute_id, metadata in attributes.items():
                    self._register(sensor, str(attribute_id), metadata)
            self.sensors[sensor_id] = sensor
            logger.info("sensor %s started", sensor_id)
        sensor.connections += 1

        room_id = params.get("room_id")
        if isinstance(room_id, str) and room_id and sensor.room_id != room_id:
            sensor.room_id = room_id
            self._room_event(room_id, "sensor_added", {"sensor": sensor.to_json()})
        return sensor

    def disconnect(self, sensor_id: str) -> None:
        """A sensor channel ended; the last one stops the sensor process."""
        sensor = self.sensors.get(sensor_id)
        if sensor is None:
            return
        sensor.connections -= 1
        if sensor.connections > 0:
            return
        del self.sensors[sensor_id]
        logger.info("sensor %s stopped", sensor_id)
        if sensor.room_id is not None:
            self._room_event(sensor.room_id, "sensor_removed", {"sensor_id": sensor_id})

    def _register(self, sensor: Sensor, attribute_id: str, metadata: Any) -> None:
        meta = dict(metadata) if isinstance(metadata, dict) else {}
        kind = meta.get("attribute_type")
        sensor.attributes[attribute_id] = Attribute(
            attribute_id,
            kind if isinstance(kind, str) else inferred_type(attribute_id),
            meta,
        )

    def register_attribute(
        self, sensor_id: str, attribute_id: str, metadata: dict[str, Any]
    ) -> None:
        sensor = self.sensors[sensor_id]
        self._register(sensor, attribute_id, metadata)

    def unregister_attribute(self, sensor_id: str, attribute_id: str) -> None:
        self.sensors[sensor_id].attributes.pop(attribute_id, None)

    def store(self, sensor_id: str, items: list[dict[str, Any]]) -> None:
        """Valid measurements of one sensor: last values, then to viewers."""
        sensor = self.sensors.get(sensor_id)
        if sensor is None:
            return
        stored: list[dict[str, Any]] = []
        for raw in items:
            item = dict(raw)
            attribute_id = item["attribute_id"]
            if attribute_id == "imu" and isinstance(item["payload"], str):
                parsed = imu_payload(item["payload"])
                if parsed is not None:
                    item["payload"] = parsed
            attribute = sensor.attributes.get(attribute_id)
            if attribute is None:
                attribute = Attribute(
                    attribute_id, inferred_type(attribute_id, item["payload"])
                )
                sensor.attributes[attribute_id] = attribute
            attribute.last_value = {
                "payload": item["payload"],
                "timestamp": item["timestamp"],
            }
            item["sensor_id"] = sensor_id
            stored.append(item)
        sensor.measurements += len(stored)
        self.pubsub.broadcast(
            ServerEvent(f"data:{sensor_id}", "measurements", {"items": stored})
        )

    def room_sensors(self, room_id: str) -> list[dict[str, Any]]:
        """The ``<sensor>`` objects of the sensors attached to a room."""
        return [s.to_json() for s in self.sensors.values() if s.room_id == room_id]

    def _room_event(self, room_id: str, event: str, body: dict[str, Any]) -> None:
        canonical = room_id.lower()
        payload = {"room_id": canonical, **body}
        self.pubsub.broadcast(ServerEvent(f"room:{canonical}", event, payload))

    # -- backpressure ------------------------------------------------------------

    def config_for(self, sensor_id: str) -> dict[str, Any]:
        """The ``backpressure_config`` a sensor's channels get now."""
        attention = self._attention.get(sensor_id, "none")
        return backpressure_config(
            attention, self.system_load, self.memory_protection, self.now_ms()
        )

    def set_attention(self, sensor_id: str, level: AttentionLevel) -> None:
        """Test control: viewers' attention on one sensor changed."""
        # Known limit: attention comes only from test control, not from the
        # viewer channels watching the sensor.
        if level not in ATTENTION_LEVELS:
            raise ValueError(f"unknown attention level {level!r}")
        if self._attention.get(sensor_id, "none") == level:
            return
        self._attention[sensor_id] = level
        if sensor_id in self.sensors:
            self.sensors[sensor_id].attention = level
        logger.info("sensor %s: attention %s", sensor_id, level)
        self._push_config(sensor_id)

    def set_system_load(self, level: str) -> None:
        """Test control: the load monitor's level changed."""
        if level not in SYSTEM_LOADS:
            raise ValueError(f"unknown system load {level!r}")
        if level == self.system_load:
            return
        self.system_load = level
        logger.info("system load %s", level)
        for sensor_id in list(self.sensors):
            self._push_config(sensor_id)

    def set_memory_protection(self, active: bool) -> None:
        """Test control: memory protection switched on or off."""
        if active == self.memory_protection:
            return
        self.memory_protection = active
        logger.info("memory protection %s", "on" if active else "off")
        for sensor_id in list(self.sensors):
            self._push_config(sensor_id)

    def _push_config(self, sensor_id: str) -> None:
        self.pubsub.broadcast(
            ServerEvent(
                f"{SENSOR_TOPIC_PREFIX}{sensor_id}",
                "backpressure_config",
                self.config_for(sensor_id),
            )
        )
