"""Recent values per sensor attribute, for overlays and reports."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from callbot.sensors.measurements import Generic, Measurement, Scalar, Waveform


class SensorHistory:
    """Keeps the newest ``seconds`` of every scalar and waveform attribute.

    Time is the measurements' own (ms timestamps); nothing reads a clock.
    """

    def __init__(self, seconds: float = 60.0) -> None:
        self._span_ms = int(seconds * 1000)
        self._series: dict[tuple[str, str], deque[tuple[int, float]]] = {}
        self._generic: dict[tuple[str, str], Generic] = {}

    def add(self, measurements: Iterable[Measurement]) -> None:
        """Record measurements (in arrival order)."""
        for m in measurements:
            key = (m.sensor_id, m.attribute_id)
            if isinstance(m, Generic):
                self._generic[key] = m
                continue
            series = self._series.setdefault(key, deque())
            if isinstance(m, Scalar):
                series.append((m.timestamp, m.payload))
            elif isinstance(m, Waveform):
                series.extend(zip(m.timestamps, m.payload, strict=True))
            newest = series[-1][0]
            while series and series[0][0] < newest - self._span_ms:
                series.popleft()

    def latest(self, sensor_id: str, attribute_id: str) -> tuple[int, float] | None:
        """The newest ``(timestamp_ms, value)`` of an attribute, if any."""
        series = self._series.get((sensor_id, attribute_id))
        return series[-1] if series else None

    def latest_generic(self, sensor_id: str, attribute_id: str) -> Generic | None:
        """The newest measurement of an untyped attribute, if any."""
        return self._generic.get((sensor_id, attribute_id))

    def window(
        self, sensor_id: str, attribute_id: str, since_ms: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """Timestamps and values at or after ``since_ms``, oldest first."""
        series = self._series.get((sensor_id, attribute_id))
        if not series:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        # Walk back from the newest end; the window is usually short.
        recent: list[tuple[int, float]] = []
        for sample in reversed(series):
            if sample[0] < since_ms:
                break
            recent.append(sample)
        recent.reverse()
        if not recent:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        ts, vs = zip(*recent, strict=True)
        return np.asarray(ts, dtype=np.int64), np.asarray(vs, dtype=np.float64)
