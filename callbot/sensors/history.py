"""Recent values per sensor attribute, for overlays and reports."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from callbot.sensors.measurements import Generic, Measurement, Scalar, Waveform

_INITIAL_CAPACITY = 1024


class _Series:
    """Samples of one attribute in arrival order, in growable numpy arrays.

    Overlays ask for a window many times a second, so a window is a slice
    found with vectorised comparisons rather than a walk over the samples.
    """

    def __init__(self) -> None:
        self.ts = np.empty(_INITIAL_CAPACITY, dtype=np.int64)
        self.vs = np.empty(_INITIAL_CAPACITY, dtype=np.float64)
        self.start = 0
        self.end = 0

    def __len__(self) -> int:
        return self.end - self.start

    def extend(self, ts: Sequence[int], vs: Sequence[float]) -> None:
        n = len(ts)
        if self.end + n > self.ts.shape[0]:
            self._make_room(n)
        self.ts[self.end : self.end + n] = ts
        self.vs[self.end : self.end + n] = vs
        self.end += n

    def _make_room(self, n: int) -> None:
        size = len(self)
        capacity = self.ts.shape[0]
        while size + n > capacity // 2:
            capacity *= 2
        ts = np.empty(capacity, dtype=np.int64)
        vs = np.empty(capacity, dtype=np.float64)
        ts[:size] = self.ts[self.start : self.end]
        vs[:size] = self.vs[self.start : self.end]
        self.ts, self.vs, self.start, self.end = ts, vs, 0, size

    def forget_before(self, cutoff: int) -> None:
        """Drop the oldest samples up to the first one at or after ``cutoff``."""
        recent = self.ts[self.start : self.end] >= cutoff
        first = int(np.argmax(recent)) if recent.any() else len(self)
        self.start += first

    def since(
        self, since_ms: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """The newest run of samples at or after ``since_ms`` (copies)."""
        older = np.flatnonzero(self.ts[self.start : self.end] < since_ms)
        first = self.start + (int(older[-1]) + 1 if older.size else 0)
        return self.ts[first : self.end].copy(), self.vs[first : self.end].copy()


class SensorHistory:
    """Keeps the newest ``seconds`` of every scalar and waveform attribute.

    Time is the measurements' own (ms timestamps); nothing reads a clock.
    """

    def __init__(self, seconds: float = 60.0) -> None:
        self._span_ms = int(seconds * 1000)
        self._series: dict[tuple[str, str], _Series] = {}
        self._generic: dict[tuple[str, str], Generic] = {}

    def add(self, measurements: Iterable[Measurement]) -> None:
        """Record measurements (in arrival order)."""
        for m in measurements:
            key = (m.sensor_id, m.attribute_id)
            if isinstance(m, Generic):
                self._generic[key] = m
                continue
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = _Series()
            if isinstance(m, Scalar):
                series.extend((m.timestamp,), (m.payload,))
            elif isinstance(m, Waveform):
                series.extend(m.timestamps, m.payload)
            newest = int(series.ts[series.end - 1])
            series.forget_before(newest - self._span_ms)

    def latest(self, sensor_id: str, attribute_id: str) -> tuple[int, float] | None:
        """The newest ``(timestamp_ms, value)`` of an attribute, if any."""
        series = self._series.get((sensor_id, attribute_id))
        if not series:
            return None
        return int(series.ts[series.end - 1]), float(series.vs[series.end - 1])

    def latest_generic(self, sensor_id: str, attribute_id: str) -> Generic | None:
        """The newest measurement of an untyped attribute, if any."""
        return self._generic.get((sensor_id, attribute_id))

    def window(
        self, sensor_id: str, attribute_id: str, since_ms: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """Timestamps and values at or after ``since_ms``, oldest first.

        The window ends, going back from the newest sample, at the first
        sample older than ``since_ms`` (arrival order, as recorded).
        """
        series = self._series.get((sensor_id, attribute_id))
        if not series:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        return series.since(since_ms)
