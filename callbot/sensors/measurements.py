"""Typed measurements, parsed from what Sensocto's channels push.

A measurement is ``{sensor_id, attribute_id, payload, timestamp}``: a number
for a scalar attribute (heart rate in bpm), samples for a waveform attribute
(ECG in mV, respiration), and the raw JSON payload for anything else.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeAlias

from callbot.errors import SensorDataError
from callbot.sensors import delta

logger = logging.getLogger(__name__)

ATTRIBUTE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


class AttributeKind(Enum):
    """How an attribute's payloads are typed."""

    SCALAR = "scalar"
    WAVEFORM = "waveform"
    GENERIC = "generic"


# The server infers attribute types from the id; these are the ones callbot
# types. Everything else is kept as a generic measurement.
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
    "temperature": "temperature",
}
_KIND_BY_TYPE = {
    "ecg": AttributeKind.WAVEFORM,
    "respiration": AttributeKind.WAVEFORM,
    "heartrate": AttributeKind.SCALAR,
    "hrv": AttributeKind.SCALAR,
    "battery": AttributeKind.SCALAR,
    "temperature": AttributeKind.SCALAR,
}
# Object payloads that the attribute reference documents for scalars.
_SCALAR_KEYS = ("bpm", "value", "level", "rmssd")


def attribute_type(attribute_id: str) -> str | None:
    """The server's inferred type for an attribute id, if callbot knows it."""
    return _TYPE_BY_ID.get(attribute_id.lower())


def attribute_kind(attribute_id: str) -> AttributeKind:
    """Whether an attribute carries a scalar, a waveform or generic payloads."""
    kind = attribute_type(attribute_id)
    if kind is None:
        return AttributeKind.GENERIC
    return _KIND_BY_TYPE.get(kind, AttributeKind.GENERIC)


@dataclass(frozen=True, slots=True)
class Scalar:
    """One number, e.g. a heart rate in bpm."""

    sensor_id: str
    attribute_id: str
    payload: float
    timestamp: int


@dataclass(frozen=True, slots=True)
class Waveform:
    """Consecutive samples of one attribute; ``timestamp`` is the first's."""

    sensor_id: str
    attribute_id: str
    payload: tuple[float, ...]
    timestamps: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.payload or len(self.payload) != len(self.timestamps):
            raise SensorDataError(
                f"{self.sensor_id}/{self.attribute_id}: {len(self.payload)} "
                f"samples with {len(self.timestamps)} timestamps"
            )

    @property
    def timestamp(self) -> int:
        return self.timestamps[0]

    def samples(self) -> list[tuple[int, float]]:
        """The samples as ``(timestamp_ms, value)`` tuples."""
        return list(zip(self.timestamps, self.payload, strict=True))


@dataclass(frozen=True, slots=True)
class Generic:
    """A measurement of an attribute callbot does not type; payload as sent."""

    sensor_id: str
    attribute_id: str
    payload: Any
    timestamp: int


Measurement: TypeAlias = Scalar | Waveform | Generic


@dataclass(frozen=True, slots=True)
class ItemError:
    """One unusable item of a batch; the rest of the batch is kept."""

    sensor_id: str
    attribute_id: str
    reason: str


@dataclass(slots=True)
class ParsedBatch:
    """What one push yielded."""

    measurements: list[Measurement] = field(default_factory=list)
    errors: list[ItemError] = field(default_factory=list)


def _is_number(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def _timestamp(obj: Mapping[str, Any]) -> int:
    ts = obj.get("timestamp")
    if isinstance(ts, bool) or not isinstance(ts, int | float):
        raise SensorDataError(f"timestamp {ts!r} is not a number")
    return int(ts)


def _scalar_value(payload: Any) -> float | None:
    if _is_number(payload):
        return float(payload)
    if isinstance(payload, Mapping):
        for key in _SCALAR_KEYS:
            if _is_number(payload.get(key)):
                return float(payload[key])
    return None


def measurement(
    sensor_id: str, attribute_id: str, payload: Any, timestamp: int
) -> Measurement:
    """Type one wire measurement by its attribute.

    A scalar or waveform attribute with a payload of another shape is kept
    as a :class:`Generic` measurement rather than dropped.
    """
    kind = attribute_kind(attribute_id)
    if kind is AttributeKind.SCALAR:
        value = _scalar_value(payload)
        if value is not None:
            return Scalar(sensor_id, attribute_id, value, timestamp)
    elif kind is AttributeKind.WAVEFORM:
        if _is_number(payload):
            return Waveform(sensor_id, attribute_id, (float(payload),), (timestamp,))
        values = payload.get("values") if isinstance(payload, Mapping) else None
        if isinstance(values, list) and values and all(map(_is_number, values)):
            # Known limit: {"values": [...]} carries no sample spacing, so
            # every sample gets the measurement's timestamp.
            return Waveform(
                sensor_id,
                attribute_id,
                tuple(float(v) for v in values),
                (timestamp,) * len(values),
            )
    return Generic(sensor_id, attribute_id, payload, timestamp)


def parse_measurement(
    obj: Mapping[str, Any], sensor_id: str | None = None
) -> Measurement:
    """Parse ``{attribute_id, payload, timestamp[, sensor_id]}``.

    Raises:
        SensorDataError: a key is missing or has the wrong type.
    """
    sid = obj.get("sensor_id", sensor_id)
    attribute_id = obj.get("attribute_id")
    if not isinstance(sid, str) or not sid:
        raise SensorDataError(f"measurement without a sensor_id: {obj!r}")
    if not isinstance(attribute_id, str) or not ATTRIBUTE_ID.match(attribute_id):
        raise SensorDataError(f"invalid attribute_id {attribute_id!r}")
    if "payload" not in obj:
        raise SensorDataError(f"{sid}/{attribute_id}: measurement without payload")
    return measurement(sid, attribute_id, obj["payload"], _timestamp(obj))


def _join_waveform(parts: Sequence[Measurement]) -> list[Measurement]:
    # Consecutive one-sample waveforms of a list become one waveform.
    out: list[Measurement] = []
    run: list[Waveform] = []

    def close_run() -> None:
        if run:
            first = run[0]
            out.append(
                Waveform(
                    first.sensor_id,
                    first.attribute_id,
                    tuple(v for w in run for v in w.payload),
                    tuple(t for w in run for t in w.timestamps),
                )
            )
            run.clear()

    for m in parts:
        if isinstance(m, Waveform):
            run.append(m)
        else:
            close_run()
            out.append(m)
    close_run()
    return out


def parse_attribute_value(
    sensor_id: str, attribute_id: str, value: Any
) -> list[Measurement]:
    """Parse one value of a ``sensor_batch``: an object, a list or a delta blob.

    Raises:
        SensorDataError: the value or one of its items is unusable.
    """
    if delta.is_delta_item(value):
        samples = delta.decode_item(value)
        if len(samples) == 0:
            return []
        return [
            Waveform(
                sensor_id,
                attribute_id,
                tuple(samples.values.tolist()),
                tuple(samples.timestamps.tolist()),
            )
        ]
    if isinstance(value, list):
        parts = [
            parse_measurement({**item, "attribute_id": attribute_id}, sensor_id)
            if isinstance(item, Mapping)
            else _bad(item)
            for item in value
        ]
        return _join_waveform(parts)
    if isinstance(value, Mapping):
        return [parse_measurement({**value, "attribute_id": attribute_id}, sensor_id)]
    raise SensorDataError(f"value {value!r} is neither an object nor a list")


def _bad(item: object) -> Measurement:
    raise SensorDataError(f"list item {item!r} is not an object")


def parse_sensor_batch(payload: Mapping[str, Any]) -> ParsedBatch:
    """Parse a ``viewer:data:*`` ``sensor_batch`` push.

    An unusable item (a bad delta blob, a malformed measurement) becomes an
    :class:`ItemError` and the rest of the batch is still parsed.
    """
    result = ParsedBatch()
    batch = payload.get("batch")
    if not isinstance(batch, Mapping):
        result.errors.append(ItemError("", "", "sensor_batch without a batch object"))
        return result
    for sensor_id, attributes in batch.items():
        if not isinstance(attributes, Mapping):
            result.errors.append(ItemError(sensor_id, "", "attributes not an object"))
            continue
        for attribute_id, value in attributes.items():
            try:
                result.measurements += parse_attribute_value(
                    sensor_id, attribute_id, value
                )
            except SensorDataError as exc:
                logger.debug("sensor_batch %s/%s: %s", sensor_id, attribute_id, exc)
                result.errors.append(ItemError(sensor_id, attribute_id, str(exc)))
    return result


def parse_room_sensor(sensor: Mapping[str, Any]) -> ParsedBatch:
    """The ``last_value`` of each attribute of a ``room_state`` sensor."""
    result = ParsedBatch()
    sensor_id = sensor.get("sensor_id")
    attributes = sensor.get("attributes")
    if not isinstance(sensor_id, str) or not isinstance(attributes, list):
        result.errors.append(ItemError(str(sensor_id), "", "malformed sensor"))
        return result
    for attribute in attributes:
        if not isinstance(attribute, Mapping):
            continue
        attribute_id = attribute.get("id")
        last = attribute.get("last_value")
        if not isinstance(attribute_id, str) or not isinstance(last, Mapping):
            continue
        try:
            result.measurements.append(
                parse_measurement(
                    {**last, "attribute_id": attribute_id, "sensor_id": sensor_id}
                )
            )
        except SensorDataError as exc:
            result.errors.append(ItemError(sensor_id, attribute_id, str(exc)))
    return result


def _identity(m: Measurement) -> tuple[object, ...]:
    if isinstance(m, Waveform):
        return (m.sensor_id, m.attribute_id, m.timestamps, m.payload)
    if isinstance(m, Scalar):
        return (m.sensor_id, m.attribute_id, m.timestamp, m.payload)
    body = json.dumps(m.payload, sort_keys=True, default=repr)
    return (m.sensor_id, m.attribute_id, m.timestamp, body)


class Deduplicator:
    """Drops measurements already seen, e.g. the server's doubled pushes.

    Remembers the identities of the newest ``capacity`` measurements; an
    identical repeat (same sensor, attribute, timestamps and payload) is
    dropped.
    """

    def __init__(self, capacity: int = 4096) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._capacity = capacity
        self._seen: OrderedDict[tuple[object, ...], None] = OrderedDict()
        self.duplicates = 0

    def accept(self, m: Measurement) -> bool:
        """True the first time a measurement is seen, False for a repeat."""
        key = _identity(m)
        if key in self._seen:
            self._seen.move_to_end(key)
            self.duplicates += 1
            return False
        self._seen[key] = None
        if len(self._seen) > self._capacity:
            self._seen.popitem(last=False)
        return True

    def filter(self, measurements: Iterable[Measurement]) -> list[Measurement]:
        """The measurements not seen before, in order."""
        return [m for m in measurements if self.accept(m)]
