"""All widgets of one video, fed with measurements, drawn onto each frame.

The overlay is fed on the event loop and drawn in the video source's worker
thread; a lock keeps the history consistent between the two.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from callbot.sensors.history import SensorHistory
from callbot.sensors.measurements import Measurement
from media.overlays.config import OverlayConfig
from media.overlays.widgets import Widget, make_widget

logger = logging.getLogger(__name__)


class SensorOverlay:
    """Draws the configured widgets; callable as a video source's frame hook."""

    def __init__(self, config: OverlayConfig) -> None:
        self.config = config
        self.widgets: list[Widget] = [make_widget(w) for w in config.widgets]
        self.history = SensorHistory(config.history_seconds)
        self._lock = threading.Lock()

    def feed(self, measurements: Iterable[Measurement]) -> None:
        """Add measurements (any sensor; those no widget shows are kept too)."""
        with self._lock:
            self.history.add(measurements)

    def draw(self, image: npt.NDArray[np.uint8], now_ms: int) -> None:
        """Draw every widget onto a BGR ``image`` in place."""
        with self._lock:
            for widget in self.widgets:
                widget.draw(image, self.history, now_ms)

    def __call__(self, image: npt.NDArray[np.uint8], wall_clock: float) -> None:
        self.draw(image, round(wall_clock * 1000))
