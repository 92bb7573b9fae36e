"""The overlay widgets: each draws itself from the sensor history at a time.

A widget never reads a clock: ``now_ms`` (wall-clock milliseconds, the same
clock as the measurements' timestamps) is passed in. Data older than the
widget's ``stale_after`` is drawn in the stale colour with its age.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod

import cv2
import numpy as np
import numpy.typing as npt

from callbot.sensors.history import SensorHistory
from media.overlays import font
from media.overlays.config import (
    BadgeConfig,
    LabelConfig,
    SparklineConfig,
    WaveformConfig,
    WidgetConfig,
    bgr,
)

logger = logging.getLogger(__name__)

Image = npt.NDArray[np.uint8]
Colour = tuple[int, int, int]
PAD = 6
AGE_SCALE = 2


def format_age(ms: int) -> str:
    """A short age for stale data: ``"12s"``, ``"5m"``, ``"2h"``."""
    seconds = max(0, ms) // 1000
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    return f"{min(seconds // 3600, 99)}h"


def _clip(config: WidgetConfig, image: Image) -> tuple[int, int, int, int] | None:
    height, width = image.shape[:2]
    x0, y0 = min(config.x, width), min(config.y, height)
    x1 = min(config.x + config.width, width)
    y1 = min(config.y + config.height, height)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


class Widget(ABC):
    """One widget; subclasses draw their content over the background panel."""

    def __init__(self, config: WidgetConfig) -> None:
        self.config = config
        self.colour: Colour = bgr(config.colour)
        self.stale_colour: Colour = bgr(config.stale_colour)
        self._panel = self._make_panel()

    def _make_panel(self) -> Image | None:
        c = self.config
        if c.background is None or c.background_opacity <= 0.0:
            return None
        panel = np.empty((c.height, c.width, 3), dtype=np.uint8)
        panel[:] = bgr(c.background)
        return panel

    def draw(self, image: Image, history: SensorHistory, now_ms: int) -> None:
        box = _clip(self.config, image)
        if box is None:
            return
        if self._panel is not None:
            x0, y0, x1, y1 = box
            roi = image[y0:y1, x0:x1]
            panel = self._panel[: y1 - y0, : x1 - x0]
            a = self.config.background_opacity
            cv2.addWeighted(roi, 1.0 - a, panel, a, 0.0, dst=roi)
        self.draw_content(image, history, now_ms)

    @abstractmethod
    def draw_content(self, image: Image, history: SensorHistory, now_ms: int) -> None:
        """Draw what the widget shows over its panel."""

    def _age_text(self, image: Image, age_ms: int, right: int, top: int) -> None:
        text = format_age(age_ms)
        w, _ = font.text_size(text, AGE_SCALE)
        font.draw_text(image, text, (right - w, top), AGE_SCALE, self.stale_colour)


class ValueBadge(Widget):
    """The newest value in large digits, a trend arrow and the unit."""

    config: BadgeConfig

    def __init__(self, config: BadgeConfig) -> None:
        super().__init__(config)
        self.scale = max(1, (config.height - 2 * PAD) // (font.GLYPH_HEIGHT + 1))
        self.max_chars = 3 + (config.decimals + 1 if config.decimals else 0)

    @property
    def digits_origin(self) -> tuple[int, int]:
        """Top-left corner of the value's digits (for reading them back)."""
        c = self.config
        return c.x + PAD, c.y + (c.height - font.GLYPH_HEIGHT * self.scale) // 2

    def read(self, image: Image) -> str:
        """The value as shown in ``image`` (e.g. a decoded frame)."""
        return font.read_text(image, self.digits_origin, self.scale, self.max_chars)

    def draw_content(self, image: Image, history: SensorHistory, now_ms: int) -> None:
        c = self.config
        latest = history.latest(c.sensor_id, c.attribute_id)
        if latest is None:
            font.draw_text(
                image, "--", self.digits_origin, self.scale, self.stale_colour
            )
            return
        ts, value = latest
        age = now_ms - ts
        stale = age > c.stale_after * 1000
        colour = self.stale_colour if stale else self.colour

        text = f"{value:.{c.decimals}f}"[: self.max_chars]
        font.draw_text(image, text, self.digits_origin, self.scale, colour)

        column = c.x + PAD + font.text_size("0" * self.max_chars, self.scale)[0] + PAD
        self._arrow(image, self.trend(history, ts, value), column, colour)
        cv2.putText(
            image,
            c.unit,
            (column + 22, c.y + c.height // 2 + 4),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5,
            colour,
            1,
            cv2.LINE_8,
        )
        if stale:
            bottom = c.y + c.height - PAD - font.GLYPH_HEIGHT * AGE_SCALE
            self._age_text(image, age, c.x + c.width - PAD, bottom)

    def trend(self, history: SensorHistory, ts: int, value: float) -> int:
        """1 rising, -1 falling, 0 steady over ``trend_seconds`` before ``ts``."""
        c = self.config
        _, values = history.window(
            c.sensor_id, c.attribute_id, ts - int(c.trend_seconds * 1000)
        )
        if values.shape[0] < 2:
            return 0
        change = value - float(values[0])
        if change > c.trend_threshold:
            return 1
        if change < -c.trend_threshold:
            return -1
        return 0

    def _arrow(self, image: Image, trend: int, left: int, colour: Colour) -> None:
        c = self.config
        top, size = c.y + PAD, min(16, c.height // 2 - PAD)
        if trend > 0:
            pts = [
                (left, top + size),
                (left + size, top + size),
                (left + size // 2, top),
            ]
        elif trend < 0:
            pts = [(left, top), (left + size, top), (left + size // 2, top + size)]
        else:
            pts = [(left, top), (left, top + size), (left + size, top + size // 2)]
        cv2.fillPoly(image, [np.array(pts, dtype=np.int32)], colour, cv2.LINE_8)


class WaveformStrip(Widget):
    """A waveform scrolling at paper speed; the right edge is ``now - delay``."""

    config: WaveformConfig

    def _make_panel(self) -> Image | None:
        panel = super()._make_panel()
        c = self.config
        if panel is None or not c.grid:
            return panel
        # 5 mm paper grid in a dim shade of the trace colour.
        grid = tuple(int(v * 0.3) for v in bgr(c.colour))
        step = 5 * c.pixels_per_mm
        for k in range(1, int(c.width / step) + 1):
            panel[:, int(c.width - k * step)] = grid
        for k in range(1, int(c.height / step) + 1):
            panel[int(c.height - k * step), :] = grid
        return panel

    def value_range(self, values: npt.NDArray[np.float64]) -> tuple[float, float]:
        """The values at the bottom and the top of the strip."""
        c = self.config
        low = c.min_value if c.min_value is not None else float(values.min())
        high = c.max_value if c.max_value is not None else float(values.max())
        if high - low < 1e-9:
            high = low + 1.0
        return low, high

    def column_times(self, now_ms: int) -> npt.NDArray[np.float64]:
        """The time (ms) each column of the strip shows at ``now_ms``."""
        c = self.config
        right = now_ms - c.delay_ms
        columns = np.arange(c.width, dtype=np.float64)
        return right - (c.width - 1 - columns) * 1000.0 / c.pixels_per_second

    def draw_content(self, image: Image, history: SensorHistory, now_ms: int) -> None:
        c = self.config
        right = now_ms - c.delay_ms
        span_ms = (c.width - 1) * 1000.0 / c.pixels_per_second
        ts, values = history.window(c.sensor_id, c.attribute_id, int(right - span_ms))
        keep = ts <= right
        ts, values = ts[keep], values[keep]
        if ts.shape[0] == 0:
            latest = history.latest(c.sensor_id, c.attribute_id)
            if latest is not None:
                self._age_text(
                    image, now_ms - latest[0], c.x + c.width - PAD, c.y + PAD
                )
            return

        age = now_ms - int(ts[-1])
        stale = age > c.stale_after * 1000 + c.delay_ms
        low, high = self.value_range(values)
        xs = c.x + (c.width - 1) - (right - ts) * (c.pixels_per_second / 1000.0)
        ys = c.y + (c.height - 2) * (1.0 - (values - low) / (high - low))
        ys = np.clip(ys, c.y, c.y + c.height - 2)
        points = np.stack([xs, ys], axis=1).round().astype(np.int32)
        colour = self.stale_colour if stale else self.colour
        cv2.polylines(image, [points], False, colour, 2, cv2.LINE_8)
        if stale:
            self._age_text(image, age, c.x + c.width - PAD, c.y + PAD)

    def read(
        self, image: Image, low: float | None = None, high: float | None = None
    ) -> npt.NDArray[np.float64]:
        """The value the trace shows in each column (NaN where there is none).

        A pixel belongs to the trace when its luma is above the midpoint of
        the panel's and the trace's; the column's value is the middle of
        those pixels' extent, mapped back through the strip's range.
        """
        c = self.config
        region = image[c.y : c.y + c.height, c.x : c.x + c.width]
        grey = cv2.cvtColor(region, cv2.COLOR_BGR2GRAY).astype(np.float64)
        trace = float(np.dot(self.colour[::-1], (0.299, 0.587, 0.114)))
        ink = grey > (trace + float(np.median(grey))) / 2
        rows = np.arange(region.shape[0], dtype=np.float64)[:, None]
        counts = ink.sum(axis=0)
        top = np.where(ink, rows, 0.0).min(axis=0, where=ink, initial=np.inf)
        bottom = np.where(ink, rows, 0.0).max(axis=0, where=ink, initial=-1.0)
        top = np.where(counts > 0, top, 0.0)
        # Polylines of width 2 extend one pixel below the points they join.
        middle = np.where(counts > 0, (top + bottom - 1.0) / 2, np.nan)
        if low is None or high is None:
            low, high = c.min_value or 0.0, c.max_value or 1.0
        return np.asarray(low + (1.0 - middle / (c.height - 2)) * (high - low))

    def column_values(
        self,
        timestamps: npt.NDArray[np.float64],
        values: npt.NDArray[np.float64],
        now_ms: int,
    ) -> npt.NDArray[np.float64]:
        """What :meth:`read` should give for these samples drawn at ``now_ms``.

        The trace crosses each column from the lowest to the highest value in
        the column's time span (the line between its samples included), so a
        column shows the middle of that range.
        """
        times = self.column_times(now_ms)
        half = 500.0 / self.config.pixels_per_second
        bounds = np.concatenate([times - half, times[-1:] + half])
        edges = np.interp(bounds, timestamps, values)
        low = np.minimum(edges[:-1], edges[1:])
        high = np.maximum(edges[:-1], edges[1:])

        # Columns are adjacent, so each one's samples start where the
        # previous one's end, and reduceat sees exactly those.
        starts = np.searchsorted(timestamps, bounds[:-1])
        ends = np.searchsorted(timestamps, bounds[1:])
        filled = ends > starts
        if filled.any():
            segment = values[: int(ends[filled][-1])]
            first = starts[filled]
            low[filled] = np.minimum(low[filled], np.minimum.reduceat(segment, first))
            high[filled] = np.maximum(high[filled], np.maximum.reduceat(segment, first))
        return np.asarray((low + high) / 2)


class Sparkline(Widget):
    """The last ``seconds`` of an attribute, fitted to the box, newest dotted."""

    config: SparklineConfig

    def draw_content(self, image: Image, history: SensorHistory, now_ms: int) -> None:
        c = self.config
        latest = history.latest(c.sensor_id, c.attribute_id)
        if latest is None:
            return
        span_ms = int(c.seconds * 1000)
        ts, values = history.window(c.sensor_id, c.attribute_id, latest[0] - span_ms)
        # At most two points per column are drawn.
        step = max(1, ts.shape[0] // (2 * c.width))
        ts, values = ts[::step], values[::step]
        low, high = float(values.min()), float(values.max())
        if high - low < 1e-9:
            high = low + 1.0
        inner_h = c.height - 2 * PAD
        xs = c.x + PAD + (c.width - 2 * PAD - 4) * (1.0 - (latest[0] - ts) / span_ms)
        ys = c.y + PAD + inner_h * (1.0 - (values - low) / (high - low))
        points = np.stack([xs, ys], axis=1).round().astype(np.int32)

        age = now_ms - latest[0]
        stale = age > c.stale_after * 1000
        colour = self.stale_colour if stale else self.colour
        cv2.polylines(image, [points], False, colour, 1, cv2.LINE_8)
        cv2.circle(image, tuple(int(v) for v in points[-1]), 2, colour, -1)
        if stale:
            self._age_text(image, age, c.x + c.width - PAD, c.y + PAD)


class Label(Widget):
    """Fixed text in OpenCV's plain font."""

    config: LabelConfig

    def __init__(self, config: LabelConfig) -> None:
        super().__init__(config)
        self._font_scale = max(0.3, (config.height - 2 * PAD) / 22.0)

    def draw_content(self, image: Image, history: SensorHistory, now_ms: int) -> None:
        c = self.config
        cv2.putText(
            image,
            c.text,
            (c.x + PAD, c.y + c.height - PAD - 2),
            cv2.FONT_HERSHEY_SIMPLEX,
            self._font_scale,
            self.colour,
            1,
            cv2.LINE_AA,
        )


def make_widget(config: WidgetConfig) -> Widget:
    """The widget for one config entry."""
    if isinstance(config, BadgeConfig):
        return ValueBadge(config)
    if isinstance(config, WaveformConfig):
        return WaveformStrip(config)
    if isinstance(config, SparklineConfig):
        return Sparkline(config)
    return Label(config)
