"""Video snapshots as the browser sends them in the viewer tier (call-channel.md §6.3).

The latest outgoing frame is stretched to 320x240, JPEG-encoded at quality 70
with OpenCV and sent as bare base64 (no ``data:`` prefix) with a millisecond
epoch timestamp: once on entering the viewer tier, then every 1000 ms.
:class:`SnapshotSchedule` decides when (sans-I/O); :func:`encode_snapshot`
makes the payload; :func:`decode_snapshot` reads one received from others.
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass
from typing import Any

import av
import cv2
import numpy as np
from numpy.typing import NDArray

logger = logging.getLogger(__name__)

SNAPSHOT_WIDTH = 320
SNAPSHOT_HEIGHT = 240
SNAPSHOT_QUALITY = 70
SNAPSHOT_INTERVAL = 1.0

BgrImage = NDArray[np.uint8]


@dataclass(frozen=True)
class Snapshot:
    """A ``video_snapshot`` payload."""

    data: str  # base64 JPEG, no data: prefix
    width: int
    height: int
    timestamp: int  # ms since the epoch

    def payload(self) -> dict[str, Any]:
        return {
            "data": self.data,
            "width": self.width,
            "height": self.height,
            "timestamp": self.timestamp,
        }


class SnapshotError(ValueError):
    """A received snapshot is not a base64 JPEG."""


def frame_to_bgr(frame: av.VideoFrame) -> BgrImage:
    """An aiortc/PyAV frame as an OpenCV BGR image (PyAV does the colour order)."""
    return np.asarray(frame.to_ndarray(format="bgr24"), dtype=np.uint8)


def encode_jpeg(
    image: BgrImage,
    width: int = SNAPSHOT_WIDTH,
    height: int = SNAPSHOT_HEIGHT,
    quality: int = SNAPSHOT_QUALITY,
) -> bytes:
    """``image`` (BGR) stretched to ``width``x``height`` as JPEG bytes."""
    if image.shape[1] != width or image.shape[0] != height:
        # The browser draws into a fixed canvas: the aspect ratio is not kept.
        image = np.asarray(
            cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA),
            dtype=np.uint8,
        )
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise SnapshotError("OpenCV could not encode the snapshot")
    return bytes(encoded.tobytes())


def encode_snapshot(
    frame: av.VideoFrame | BgrImage,
    timestamp_ms: int,
    *,
    width: int = SNAPSHOT_WIDTH,
    height: int = SNAPSHOT_HEIGHT,
    quality: int = SNAPSHOT_QUALITY,
) -> Snapshot:
    """The ``video_snapshot`` of a frame (a PyAV frame, or a BGR image)."""
    image = frame_to_bgr(frame) if isinstance(frame, av.VideoFrame) else frame
    jpeg = encode_jpeg(image, width, height, quality)
    return Snapshot(base64.b64encode(jpeg).decode("ascii"), width, height, timestamp_ms)


def decode_snapshot(data: object) -> BgrImage:
    """The BGR image of a received snapshot's ``data`` (bare base64 or data URL)."""
    if not isinstance(data, str):
        raise SnapshotError(f"snapshot data is not a string: {type(data).__name__}")
    if data.startswith("data:"):
        data = data.partition(",")[2]
    try:
        jpeg = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SnapshotError(f"snapshot data is not base64: {exc}") from exc
    image = cv2.imdecode(np.frombuffer(jpeg, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise SnapshotError("snapshot data is not an image")
    return np.asarray(image, dtype=np.uint8)


class SnapshotSchedule:
    """When to send a snapshot: at once on enabling, then every ``interval`` s.

    Enabling again while enabled restarts the schedule, as the browser does
    when a ``quality_tier_request`` re-applies the viewer tier.
    """

    def __init__(self, interval: float = SNAPSHOT_INTERVAL) -> None:
        self.interval = interval
        self.enabled = False
        self._next: float | None = None

    def enable(self, now: float) -> None:
        self.enabled = True
        self._next = now

    def disable(self) -> None:
        self.enabled = False
        self._next = None

    def due(self, now: float) -> bool:
        """True if a snapshot is due at ``now`` (and counts it as taken)."""
        if not self.enabled or self._next is None or now < self._next - 1e-9:
            return False
        # Fixed-rate like setInterval; a long stall skips the missed ones.
        self._next += self.interval
        if self._next <= now:
            self._next = now + self.interval
        return True

    def next_due(self) -> float | None:
        """When the next snapshot is due, if enabled."""
        return self._next if self.enabled else None
