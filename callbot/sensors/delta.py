"""The ECG/respiration delta encoding used inside ``sensor_batch``.

Layout (little-endian): header byte ``0x01``, base timestamp int64 ms, first
value float32, then per further sample either a normal entry ``int8 d |
uint16 dt`` (value += d * 0.01) or a reset entry ``0x80 | float32 v | uint16
dt``. The encoder reproduces the reference server's byte for byte, including
Erlang's rounding (half away from zero) and its float64 running prediction.
"""

from __future__ import annotations

import base64
import binascii
import logging
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from callbot.errors import SensorDataError

logger = logging.getLogger(__name__)

HEADER = 0x01
QUANTUM = 0.01
RESET_MARKER = 0x80
DELTA_MARKER_KEY = "__delta_encoded__"

_HEAD = struct.Struct("<Bqf")
_NORMAL = struct.Struct("<bH")
_RESET = struct.Struct("<BfH")
_RESET_BODY = struct.Struct("<fH")
_ENTRY_DTYPE = np.dtype([("d", "<i1"), ("dt", "<u2")])
_MAX_DT = 0xFFFF
_MAX_DELTA = 127
# Below this size (64 entries) numpy's per-call cost outweighs its speed.
_VECTOR_MIN_BYTES = 13 + 3 * 64


@dataclass(frozen=True, slots=True)
class DecodedSamples:
    """Samples decoded from one blob, as two parallel arrays."""

    timestamps: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.timestamps.shape[0])

    def pairs(self) -> list[tuple[int, float]]:
        """The samples as ``(timestamp_ms, value)`` tuples."""
        return list(zip(self.timestamps.tolist(), self.values.tolist(), strict=True))


def erlang_round(x: float) -> int:
    """Round half away from zero, as Erlang's ``round/1`` on a float does."""
    a = abs(x)
    whole = math.floor(a)
    # a - floor(a) is exact in binary floating point, so no x + 0.5 error.
    r = whole + 1 if a - whole >= 0.5 else whole
    return int(-r if x < 0 else r)


def _number(value: object, index: int) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SensorDataError(f"sample {index}: payload {value!r} is not a number")
    v = float(value)
    if not math.isfinite(v):
        raise SensorDataError(f"sample {index}: payload {value!r} is not finite")
    return v


def _timestamp(value: object, index: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SensorDataError(f"sample {index}: timestamp {value!r} is not an integer")
    return value


def _float32(v: float, index: int) -> bytes:
    try:
        return struct.pack("<f", v)
    except OverflowError:
        raise SensorDataError(
            f"sample {index}: value {v!r} does not fit a float32"
        ) from None


def encode(samples: Sequence[tuple[int, float]]) -> bytes:
    """Encode ``(timestamp_ms, value)`` samples as the server does.

    Raises:
        SensorDataError: fewer than two samples, a non-integer timestamp or
            a non-numeric value.
    """
    if len(samples) < 2:
        raise SensorDataError(f"need at least 2 samples, got {len(samples)}")

    t0 = _timestamp(samples[0][0], 0)
    v0 = _number(samples[0][1], 0)
    out = bytearray([HEADER])
    out += struct.pack("<q", t0)
    out += _float32(v0, 0)

    # The prediction stays float64; only the written values are float32.
    predicted = v0
    previous_t = t0
    for i in range(1, len(samples)):
        t = _timestamp(samples[i][0], i)
        v = _number(samples[i][1], i)
        dt = min(max(t - previous_t, 0), _MAX_DT)
        previous_t = t
        d = erlang_round((v - predicted) / QUANTUM)
        if -_MAX_DELTA <= d <= _MAX_DELTA:
            out += _NORMAL.pack(d, dt)
            predicted = predicted + d * QUANTUM
        else:
            out.append(RESET_MARKER)
            out += _float32(v, i)
            out += struct.pack("<H", dt)
            predicted = v
    return bytes(out)


def decode(blob: bytes) -> DecodedSamples:
    """Decode one blob.

    Raises:
        SensorDataError: another header byte, a truncated blob or a sample
            that is not a finite number.
    """
    n = len(blob)
    if n < _HEAD.size:
        raise SensorDataError(f"delta blob truncated: {n} bytes, header needs 13")
    header, base_ts, first = _HEAD.unpack_from(blob, 0)
    if header != HEADER:
        raise SensorDataError(f"delta blob header 0x{header:02x}, expected 0x01")
    if not math.isfinite(first):
        raise SensorDataError("delta blob first value is not a finite number")

    # Short blobs and blobs dense with resets are faster entry by entry;
    # long ones are split into runs of normal entries decoded by numpy.
    if n < _VECTOR_MIN_BYTES or blob.count(RESET_MARKER) * 16 > n // 3:
        return _decode_sequential(blob, base_ts, first)
    return _decode_runs(blob, base_ts, first)


def _decode_sequential(blob: bytes, base_ts: int, first: float) -> DecodedSamples:
    n = len(blob)
    ts, value = base_ts, first
    timestamps, values = [ts], [value]
    normal, reset = _NORMAL.unpack_from, _RESET_BODY.unpack_from
    pos = _HEAD.size
    while pos < n:
        if blob[pos] == RESET_MARKER:
            if pos + _RESET.size > n:
                raise SensorDataError(f"delta blob truncated inside a reset at {pos}")
            value, dt = reset(blob, pos + 1)
            if not math.isfinite(value):
                raise SensorDataError(f"delta blob reset at {pos} is not a number")
            pos += _RESET.size
        else:
            if pos + _NORMAL.size > n:
                raise SensorDataError(
                    f"delta blob truncated: {n - pos} stray bytes at {pos}"
                )
            d, dt = normal(blob, pos)
            value += d * QUANTUM
            pos += _NORMAL.size
        ts += dt
        timestamps.append(ts)
        values.append(value)
    return DecodedSamples(
        timestamps=np.array(timestamps, dtype=np.int64),
        values=np.array(values, dtype=np.float64),
    )


def _decode_runs(blob: bytes, base_ts: int, first: float) -> DecodedSamples:
    # Split the entries into runs of normal entries separated by resets. A
    # 0x80 byte is a reset only where an entry starts; elsewhere it is part
    # of a dt.
    n = len(blob)
    runs: list[npt.NDArray[np.void]] = []
    resets: list[tuple[float, int]] = []
    pos = _HEAD.size
    while pos < n:
        marker = blob.find(RESET_MARKER, pos)
        while marker != -1 and (marker - pos) % 3:
            marker = blob.find(RESET_MARKER, marker + 1)
        end = n if marker == -1 else marker
        if (end - pos) % 3:
            raise SensorDataError(
                f"delta blob truncated: {(end - pos) % 3} stray bytes at "
                f"{end - (end - pos) % 3}"
            )
        runs.append(
            np.frombuffer(blob, dtype=_ENTRY_DTYPE, count=(end - pos) // 3, offset=pos)
        )
        if marker == -1:
            break
        if marker + _RESET.size > n:
            raise SensorDataError(f"delta blob truncated inside a reset at {marker}")
        _, value, dt = _RESET.unpack_from(blob, marker)
        if not math.isfinite(value):
            raise SensorDataError(f"delta blob reset at {marker} is not a number")
        resets.append((value, dt))
        pos = marker + _RESET.size
    return _assemble(base_ts, first, runs, resets)


def _assemble(
    base_ts: int,
    first: float,
    runs: list[npt.NDArray[np.void]],
    resets: list[tuple[float, int]],
) -> DecodedSamples:
    # Each segment starts at the first value or a reset and accumulates its
    # deltas one by one in float64, like the browser decoder; cumsum adds
    # sequentially, so the sums are identical.
    values: list[npt.NDArray[np.float64]] = []
    dts: list[npt.NDArray[np.int64]] = []
    start = first
    for i, run in enumerate(runs):
        steps = np.empty(run.shape[0] + 1, dtype=np.float64)
        steps[0] = start
        steps[1:] = run["d"].astype(np.float64) * QUANTUM
        values.append(np.cumsum(steps))
        dts.append(run["dt"].astype(np.int64))
        if i < len(resets):
            start, reset_dt = resets[i]
            dts.append(np.array([reset_dt], dtype=np.int64))
    if len(resets) == len(runs):
        values.append(np.array([start], dtype=np.float64))

    all_dt = np.concatenate(dts) if dts else np.zeros(0, dtype=np.int64)
    timestamps = np.empty(all_dt.shape[0] + 1, dtype=np.int64)
    timestamps[0] = base_ts
    np.cumsum(all_dt, out=timestamps[1:])
    timestamps[1:] += base_ts
    return DecodedSamples(timestamps=timestamps, values=np.concatenate(values))


def encode_item(samples: Sequence[tuple[int, float]]) -> dict[str, Any]:
    """The ``sensor_batch`` object that replaces a list of samples."""
    blob = encode(samples)
    return {
        DELTA_MARKER_KEY: True,
        "data": base64.b64encode(blob).decode("ascii"),
        "sample_count": len(samples),
    }


def is_delta_item(value: object) -> bool:
    """Whether a ``sensor_batch`` value is a delta-encoded object."""
    return isinstance(value, Mapping) and value.get(DELTA_MARKER_KEY) is True


def decode_item(item: Mapping[str, Any]) -> DecodedSamples:
    """Decode a ``{"__delta_encoded__": true, "data", "sample_count"}`` object.

    Raises:
        SensorDataError: bad base64, a bad blob, or a count that does not
            match ``sample_count``.
    """
    data = item.get("data")
    if not isinstance(data, str):
        raise SensorDataError("delta item has no base64 'data' string")
    try:
        blob = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SensorDataError(f"delta item data is not base64: {exc}") from None
    samples = decode(blob)
    count = item.get("sample_count")
    if count is not None and count != len(samples):
        raise SensorDataError(
            f"delta item says {count!r} samples, blob holds {len(samples)}"
        )
    return samples
