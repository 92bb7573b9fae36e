"""Replay of a recorded file of measurements, paced by a passed-in clock.

A recording is CSV with the header ``sensor_id,attribute_id,payload,timestamp``
(payload a number or JSON) or JSON lines of ``{sensor_id, attribute_id,
payload, timestamp}``. Records are replayed in file order; each is due when
as much time has passed since the start as passed in the recording since its
first record (divided by ``speed``). A timestamp earlier than its
predecessor's is due right after it.
"""

from __future__ import annotations

import asyncio
import csv
import inspect
import io
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from callbot.errors import SensorDataError
from callbot.sensors.measurements import Measurement, Waveform, parse_measurement

logger = logging.getLogger(__name__)

CSV_FIELDS = ("sensor_id", "attribute_id", "payload", "timestamp")


def _csv_payload(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _csv_timestamp(text: str, line: int) -> int:
    try:
        return int(text)
    except ValueError:
        try:
            return int(float(text))
        except ValueError:
            raise SensorDataError(f"line {line}: timestamp {text!r}") from None


def parse_csv(text: str) -> list[Measurement]:
    """Parse a CSV recording.

    Raises:
        SensorDataError: a missing column or an unusable row (with its line).
    """
    reader = csv.DictReader(io.StringIO(text))
    missing = set(CSV_FIELDS) - set(reader.fieldnames or ())
    if missing:
        raise SensorDataError(f"CSV recording lacks columns {sorted(missing)}")
    out: list[Measurement] = []
    for row in reader:
        line = reader.line_num
        try:
            out.append(
                parse_measurement(
                    {
                        "sensor_id": row["sensor_id"],
                        "attribute_id": row["attribute_id"],
                        "payload": _csv_payload(row["payload"]),
                        "timestamp": _csv_timestamp(row["timestamp"], line),
                    }
                )
            )
        except SensorDataError as exc:
            raise SensorDataError(f"line {line}: {exc}") from None
    return out


def parse_json_lines(text: str) -> list[Measurement]:
    """Parse a JSON-lines recording; blank lines are skipped.

    Raises:
        SensorDataError: a line that is not a measurement object.
    """
    out: list[Measurement] = []
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise SensorDataError(f"line {line}: not JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise SensorDataError(f"line {line}: not an object")
        try:
            out.append(parse_measurement(obj))
        except SensorDataError as exc:
            raise SensorDataError(f"line {line}: {exc}") from None
    return out


def load_recording(path: str | Path) -> list[Measurement]:
    """Load a ``.csv`` or JSON-lines (any other suffix) recording."""
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    if p.suffix.lower() == ".csv":
        return parse_csv(text)
    return parse_json_lines(text)


def _shift(m: Measurement, delta_ms: int) -> Measurement:
    if isinstance(m, Waveform):
        return replace(m, timestamps=tuple(t + delta_ms for t in m.timestamps))
    return replace(m, timestamp=m.timestamp + delta_ms)


class Replay:
    """Says which recorded measurements are due at a given time (seconds).

    Args:
        measurements: the recording, in file order.
        start: the clock time at which the first record is due.
        speed: 2.0 plays twice as fast.
        loop: start again after the last record, one last gap later.
        rebase_ms: if set, timestamps are moved so that the first record
            carries this timestamp (and each loop continues from there).
    """

    def __init__(
        self,
        measurements: Sequence[Measurement],
        start: float,
        *,
        speed: float = 1.0,
        loop: bool = False,
        rebase_ms: int | None = None,
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        if not measurements:
            raise SensorDataError("empty recording")
        self._records = list(measurements)
        self._start = start
        self._speed = speed
        self._loop = loop
        self._rebase_ms = rebase_ms

        # Offsets in recording ms, never decreasing.
        first = self._records[0].timestamp
        self._offsets: list[int] = []
        latest = 0
        for m in self._records:
            latest = max(latest, m.timestamp - first)
            self._offsets.append(latest)
        last_gap = (
            self._offsets[-1] - self._offsets[-2] if len(self._offsets) > 1 else 0
        )
        self._period_ms = self._offsets[-1] + (last_gap or 1000)
        self._first_ts = first
        self._index = 0
        self._cycle = 0

    @property
    def done(self) -> bool:
        return not self._loop and self._index >= len(self._records)

    def next_due(self) -> float | None:
        """Clock time of the next record, or None when the replay is over."""
        if self.done:
            return None
        offset_ms = self._cycle * self._period_ms + self._offsets[self._index]
        return self._start + offset_ms / 1000.0 / self._speed

    def due(self, now: float) -> list[Measurement]:
        """The records due at ``now`` that were not returned yet."""
        out: list[Measurement] = []
        while True:
            at = self.next_due()
            if at is None or at > now:
                return out
            m = self._records[self._index]
            if self._rebase_ms is not None:
                delta = self._rebase_ms - self._first_ts
                m = _shift(m, delta + self._cycle * self._period_ms)
            elif self._cycle:
                m = _shift(m, self._cycle * self._period_ms)
            out.append(m)
            self._index += 1
            if self._loop and self._index == len(self._records):
                self._index = 0
                self._cycle += 1


Sink = Callable[[list[Measurement]], Awaitable[None] | None]


async def play(
    replay: Replay,
    sink: Sink,
    clock: Callable[[], float],
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Feed ``sink`` with each due record until the replay is over."""
    while True:
        batch = replay.due(clock())
        if batch:
            result = sink(batch)
            if inspect.isawaitable(result):
                await result
        at = replay.next_due()
        if at is None:
            return
        await sleep(max(0.0, at - clock()))


def write_json_lines(measurements: Iterable[Measurement]) -> str:
    """A JSON-lines recording of measurements (one line per sample)."""
    lines: list[str] = []
    for m in measurements:
        if isinstance(m, Waveform):
            for t, v in m.samples():
                lines.append(_line(m.sensor_id, m.attribute_id, v, t))
        else:
            lines.append(_line(m.sensor_id, m.attribute_id, m.payload, m.timestamp))
    return "".join(lines)


def _line(sensor_id: str, attribute_id: str, payload: Any, timestamp: int) -> str:
    obj = {
        "sensor_id": sensor_id,
        "attribute_id": attribute_id,
        "payload": payload,
        "timestamp": timestamp,
    }
    return json.dumps(obj, separators=(",", ":")) + "\n"
