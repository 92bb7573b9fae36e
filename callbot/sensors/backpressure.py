"""``backpressure_config`` and the publisher's batching policy (sans-I/O).

The server pushes the full config after the sensor channel join and on every
change. The policy queues measurements and says when to send them: when the
queue reaches ``recommended_batch_size``, ``recommended_batch_window`` ms
after the first queued item, or at once when attention becomes ``high``.
While ``paused`` nothing is sent and only the newest values are kept.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from callbot.sensors.measurements import (
    AttributeKind,
    Generic,
    Measurement,
    Scalar,
    Waveform,
    attribute_kind,
)

logger = logging.getLogger(__name__)

AttentionLevel = Literal["high", "medium", "low", "none"]

BASE_WINDOW_MS: dict[str, int] = {"high": 100, "medium": 500, "low": 2000, "none": 5000}
BASE_BATCH_SIZE: dict[str, int] = {"high": 1, "medium": 5, "low": 10, "none": 20}
LOAD_MULTIPLIER: dict[str, float] = {
    "normal": 1.0,
    "elevated": 1.5,
    "high": 3.0,
    "critical": 5.0,
}
MEMORY_PROTECTION_FACTOR = 5.0


class BackpressureConfig(BaseModel):
    """The server's ``backpressure_config`` push, all eight fields."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    attention_level: AttentionLevel
    # "normal" | "elevated" | "high" | "critical"; kept as any string so a
    # new level cannot break parsing.
    system_load: str
    memory_protection_active: bool
    paused: bool
    recommended_batch_window: int
    recommended_batch_size: int
    load_multiplier: float
    timestamp: int

    @classmethod
    def initial(cls) -> BackpressureConfig:
        """What Sensocto's connectors assume before the first push."""
        return cls.computed("none", "normal", memory_protection=False, timestamp=0)

    @classmethod
    def computed(
        cls,
        attention_level: AttentionLevel,
        system_load: str,
        *,
        memory_protection: bool,
        timestamp: int,
    ) -> BackpressureConfig:
        """The config the server computes for these inputs."""
        multiplier = LOAD_MULTIPLIER.get(system_load, 1.0)
        window = int(BASE_WINDOW_MS[attention_level] * multiplier)
        if memory_protection:
            window = int(window * MEMORY_PROTECTION_FACTOR)
            multiplier *= MEMORY_PROTECTION_FACTOR
        paused = attention_level in ("low", "none") and (
            memory_protection or system_load == "critical"
        )
        return cls(
            attention_level=attention_level,
            system_load=system_load,
            memory_protection_active=memory_protection,
            paused=paused,
            recommended_batch_window=window,
            recommended_batch_size=BASE_BATCH_SIZE[attention_level],
            load_multiplier=multiplier,
            timestamp=timestamp,
        )


WireItem = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Send:
    """One push to make on ``sensocto:sensor:*``."""

    event: Literal["measurement", "measurements_batch"]
    payload: WireItem | list[WireItem]

    @property
    def items(self) -> list[WireItem]:
        return self.payload if isinstance(self.payload, list) else [self.payload]


def wire_items(m: Measurement) -> list[WireItem]:
    """The wire measurements of one measurement; a waveform is one per sample."""
    if isinstance(m, Waveform):
        return [
            {"attribute_id": m.attribute_id, "payload": v, "timestamp": t}
            for t, v in zip(m.timestamps, m.payload, strict=True)
        ]
    if isinstance(m, Scalar | Generic):
        return [
            {
                "attribute_id": m.attribute_id,
                "payload": m.payload,
                "timestamp": m.timestamp,
            }
        ]
    raise TypeError(f"not a measurement: {m!r}")


def _send(items: list[WireItem]) -> Send:
    if len(items) == 1:
        return Send("measurement", items[0])
    return Send("measurements_batch", items)


class _Held:
    """The newest values kept while paused."""

    def __init__(self, waveform_ms: int, waveform_cap: int) -> None:
        self._waveform_ms = waveform_ms
        self._waveform_cap = waveform_cap
        self._latest: dict[str, WireItem] = {}
        self._rings: dict[str, deque[WireItem]] = {}
        self.dropped = 0

    def add(self, item: WireItem) -> None:
        attribute_id = item["attribute_id"]
        if attribute_kind(attribute_id) is not AttributeKind.WAVEFORM:
            if attribute_id in self._latest:
                self.dropped += 1
            self._latest[attribute_id] = item
            return

        ring = self._rings.setdefault(attribute_id, deque())
        ring.append(item)
        newest = item["timestamp"]
        while ring and (
            len(ring) > self._waveform_cap
            or ring[0]["timestamp"] <= newest - self._waveform_ms
        ):
            ring.popleft()
            self.dropped += 1

    def take(self) -> list[WireItem]:
        """Everything held, oldest first (stable for equal timestamps)."""
        items = list(self._latest.values())
        for ring in self._rings.values():
            items += ring
        self._latest.clear()
        self._rings.clear()
        return sorted(items, key=lambda item: item["timestamp"])

    def __len__(self) -> int:
        return len(self._latest) + sum(len(r) for r in self._rings.values())


class BatchPolicy:
    """Decides when the publisher sends; time (seconds) is passed in.

    Args:
        config: the config in force; :meth:`BackpressureConfig.initial` if None.
        paused_waveform_seconds: how much of each waveform is kept while paused.
        paused_waveform_cap: an upper bound on samples kept per waveform.
    """

    def __init__(
        self,
        config: BackpressureConfig | None = None,
        *,
        paused_waveform_seconds: float = 2.0,
        paused_waveform_cap: int = 10_000,
    ) -> None:
        self.config = config or BackpressureConfig.initial()
        self._queue: list[WireItem] = []
        self._window_start: float | None = None
        self._held = _Held(round(paused_waveform_seconds * 1000), paused_waveform_cap)
        self._closed = False
        self.sent_items = 0

    @property
    def queued(self) -> int:
        """Items waiting to be sent (not counting those held while paused)."""
        return len(self._queue)

    @property
    def held(self) -> int:
        """Items kept while paused."""
        return len(self._held)

    @property
    def dropped(self) -> int:
        """Items discarded while paused (older than the newest kept)."""
        return self._held.dropped

    def add(self, measurements: Iterable[Measurement], now: float) -> list[Send]:
        """Queue measurements; returns the sends that are due now."""
        if self._closed:
            raise RuntimeError("batch policy is closed")
        sends: list[Send] = []
        for m in measurements:
            for item in wire_items(m):
                if self.config.paused:
                    self._held.add(item)
                    continue
                if not self._queue:
                    self._window_start = now
                self._queue.append(item)
                if len(self._queue) >= self.config.recommended_batch_size:
                    sends.append(self._flush())
        return sends + self.poll(now)

    def set_config(self, config: BackpressureConfig, now: float) -> list[Send]:
        """Apply a new ``backpressure_config`` at once."""
        previous = self.config
        self.config = config
        if config != previous:
            logger.info(
                "backpressure: attention %s, load %s, window %d ms, size %d%s",
                config.attention_level,
                config.system_load,
                config.recommended_batch_window,
                config.recommended_batch_size,
                ", paused" if config.paused else "",
            )
        if config.paused:
            for item in self._queue:
                self._held.add(item)
            self._queue.clear()
            self._window_start = None
            return []

        sends: list[Send] = []
        if previous.paused and len(self._held):
            held = self._held.take()
            self._queue = held + self._queue
            sends.append(self._flush())
        if self._queue and (
            config.attention_level == "high"
            or len(self._queue) >= config.recommended_batch_size
        ):
            sends.append(self._flush())
        return sends + self.poll(now)

    def poll(self, now: float) -> list[Send]:
        """The send due at ``now`` because the batch window has passed."""
        deadline = self.next_deadline()
        if deadline is not None and now >= deadline:
            return [self._flush()]
        return []

    def next_deadline(self) -> float | None:
        """When :meth:`poll` must be called next, or None with nothing queued."""
        if not self._queue or self._window_start is None:
            return None
        return self._window_start + self.config.recommended_batch_window / 1000.0

    def close(self, now: float) -> list[Send]:
        """Flush what may be sent; values held while paused are discarded."""
        self._closed = True
        if self.config.paused or not self._queue:
            return []
        return [self._flush()]

    def _flush(self) -> Send:
        items, self._queue = self._queue, []
        self._window_start = None
        self.sent_items += len(items)
        return _send(items)
