"""Sensor widgets on one participant's tile of the call composite.

The composite is drawn in I420; the widgets draw in BGR. Rather than convert
the whole tile twice a frame, a tile overlay converts only the rectangle its
widgets cover: it crops that patch out of the tile's planes, draws the
widgets onto it as BGR and writes it back. The widgets are the same as on a
bot's outgoing video (:mod:`media.overlays.widgets`), positioned in the
tile's pixels, so a stale value is drawn grey with its age here too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import cv2
import numpy as np
import numpy.typing as npt

from callbot.sensors.measurements import Measurement
from media.overlays.config import (
    BadgeConfig,
    OverlayConfig,
    SparklineConfig,
    WaveformConfig,
)
from media.overlays.overlay import SensorOverlay
from media.planar import I420

logger = logging.getLogger(__name__)


def tile_vitals(sensor_id: str) -> OverlayConfig:
    """Heart-rate badge, respiration sparkline and ECG strip sized for a tile.

    The widgets cover 352 x 152 pixels from the tile's top-left corner, which
    fits a tile of a nine-participant grid on a 1280 x 720 composite.
    """
    return OverlayConfig(
        widgets=[
            BadgeConfig(sensor_id=sensor_id, x=8, y=8, width=176, height=56),
            SparklineConfig(sensor_id=sensor_id, x=192, y=8, width=160, height=56),
            WaveformConfig(sensor_id=sensor_id, x=8, y=72, width=344, height=80),
        ]
    )


class TileSensorOverlay:
    """An overlay drawn onto a composite tile through a small BGR patch.

    Args:
        epoch: wall-clock seconds at the composite's time zero, so that the
            composite's time maps onto the measurements' timestamps.
    """

    def __init__(self, config: OverlayConfig, *, epoch: float = 0.0) -> None:
        # Known limit: widgets keep their configured pixel size; on a small tile
        # (many participants, the speaker layout's strip) they are clipped.
        self.config = config
        self.epoch = epoch
        widgets = config.widgets
        # The patch starts on even pixels, as I420 crops must.
        self.x = min((w.x for w in widgets), default=0) & ~1
        self.y = min((w.y for w in widgets), default=0) & ~1
        self.right = max((w.x + w.width for w in widgets), default=0)
        self.bottom = max((w.y + w.height for w in widgets), default=0)
        # The same widgets, positioned in the patch rather than the tile.
        shifted = [
            w.model_copy(update={"x": w.x - self.x, "y": w.y - self.y}) for w in widgets
        ]
        self.overlay = SensorOverlay(
            OverlayConfig(widgets=shifted, history_seconds=config.history_seconds)
        )
        self.sensor_ids = frozenset(
            sensor_id
            for w in widgets
            if (sensor_id := getattr(w, "sensor_id", None)) is not None
        )

    def feed(self, measurements: Iterable[Measurement]) -> None:
        """Keep the measurements of the sensors this overlay shows."""
        mine = [m for m in measurements if m.sensor_id in self.sensor_ids]
        if mine:
            self.overlay.feed(mine)

    def patch(self, width: int, height: int) -> tuple[int, int, int, int] | None:
        """The even rectangle (x, y, w, h) of a tile the widgets cover, if any."""
        right = min(self.right + (self.right & 1), width & ~1)
        bottom = min(self.bottom + (self.bottom & 1), height & ~1)
        if right <= self.x or bottom <= self.y:
            return None
        return self.x, self.y, right - self.x, bottom - self.y

    def now_ms(self, seconds: float) -> int:
        """The wall-clock milliseconds of the composite's time ``seconds``."""
        return round((self.epoch + seconds) * 1000)

    def draw_planar(self, picture: I420, now: float) -> None:
        """Draw the widgets onto an I420 tile in place."""
        box = self.patch(picture.width, picture.height)
        if box is None:
            return
        x, y, w, h = box
        image = to_bgr(picture.crop(x, y, w, h))
        self.overlay.draw(image, self.now_ms(now))
        picture.paste(from_bgr(image), x, y)

    def __call__(self, image: npt.NDArray[np.uint8], now: float) -> None:
        """Draw the widgets onto a BGR tile in place."""
        self.overlay.draw(image[self.y :, self.x :], self.now_ms(now))


# OpenCV converts a small patch about ten times faster than swscale does, in
# the same limited-range BT.601 (within one level).


def to_bgr(picture: I420) -> npt.NDArray[np.uint8]:
    """An I420 picture as BGR."""
    return np.asarray(cv2.cvtColor(picture.buffer, cv2.COLOR_YUV2BGR_I420))


def from_bgr(image: npt.NDArray[np.uint8]) -> I420:
    """A BGR image (even size) as I420, its chroma averaged over 2 x 2 pixels."""
    converted = cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420)
    picture = I420(np.asarray(converted, dtype=np.uint8))
    # OpenCV takes each 2 x 2 block's chroma from one pixel, which frays thin
    # coloured lines; the block's mean colour is what swscale would give.
    height, width = image.shape[:2]
    half = cv2.resize(image, (width // 2, height // 2), interpolation=cv2.INTER_AREA)
    b, g, r = (half[..., i].astype(np.float32) for i in range(3))
    u = 128.0 + (-37.945 * r - 74.494 * g + 112.439 * b) / 256.0
    v = 128.0 + (112.439 * r - 94.154 * g - 18.285 * b) / 256.0
    np.rint(u, out=u)
    np.rint(v, out=v)
    picture.u[:] = u
    picture.v[:] = v
    return picture
