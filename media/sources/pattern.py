"""A moving test pattern as a video track: colour bars, a sweep, name and clock."""

from __future__ import annotations

import asyncio
import fractions
import time
from collections.abc import Callable

import av
import cv2
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from numpy.typing import NDArray

from media.markers.framecode import draw_frame_code

# Draws onto a frame's BGR image in place, given the frame's wall-clock time.
FrameHook = Callable[[NDArray[np.uint8], float], None]

VIDEO_CLOCK_RATE = 90_000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE)

_BARS = (
    (192, 192, 192),
    (0, 192, 192),
    (192, 192, 0),
    (0, 192, 0),
    (192, 0, 192),
    (0, 0, 192),
    (192, 0, 0),
)


class PatternRenderer:
    """Renders frame ``n`` of the pattern as a BGR image (pure, no clock inside)."""

    def __init__(
        self, name: str, width: int = 640, height: int = 480, *, frame_code: bool = True
    ) -> None:
        self.name = name
        # The machine-readable counter, send time and flash (media.markers).
        self.frame_code = frame_code
        self.width = width
        self.height = height
        base = np.zeros((height, width * 2, 3), dtype=np.uint8)
        bar = max(1, width // len(_BARS))
        for i in range(2 * len(_BARS) + 1):
            base[:, i * bar : (i + 1) * bar] = _BARS[i % len(_BARS)]
        self._base = base

    def render(self, index: int, wall_clock: float) -> NDArray[np.uint8]:
        """Frame ``index``: bars scrolled by the index, a sweeping box, text."""
        offset = (index * 4) % (self.width)
        image = np.ascontiguousarray(self._base[:, offset : offset + self.width])
        box = self.height // 6
        x = (index * 8) % max(1, self.width - box)
        y = self.height // 2 - box // 2
        image[y : y + box, x : x + box] = (255, 255, 255)

        stamp = time.strftime("%H:%M:%S", time.gmtime(wall_clock))
        stamp += f".{int(wall_clock * 1000) % 1000:03d}"
        scale = self.height / 480
        band = int(100 * scale)
        image[self.height - band :] = (16, 16, 16)
        cv2.putText(
            image,
            self.name,
            (int(16 * scale), self.height - int(58 * scale)),
            cv2.FONT_HERSHEY_SIMPLEX,
            1.2 * scale,
            (255, 255, 255),
            2,
            cv2.LINE_AA,
        )
        cv2.putText(
            image,
            f"{stamp}  #{index}",
            (int(16 * scale), self.height - int(16 * scale)),
            cv2.FONT_HERSHEY_SIMPLEX,
            1.0 * scale,
            (0, 255, 255),
            2,
            cv2.LINE_AA,
        )
        if self.frame_code:
            draw_frame_code(image, index, wall_clock)
        return image


class PatternTrack(MediaStreamTrack):
    """Video track of :class:`PatternRenderer` frames at a fixed rate.

    Frames are rendered and converted to YUV in a worker thread, so the event
    loop only paces them.
    """

    kind = "video"

    def __init__(
        self,
        name: str,
        width: int = 640,
        height: int = 480,
        fps: int = 30,
        *,
        clock: Callable[[], float] = time.monotonic,
        overlay: FrameHook | None = None,
    ) -> None:
        super().__init__()
        self.renderer = PatternRenderer(name, width, height)
        # Runs in the worker thread after the pattern, before the encoder.
        self.overlay = overlay
        self.fps = fps
        self.frames = 0
        self._clock = clock
        self._start: float | None = None

    def _frame(self, index: int) -> av.VideoFrame:
        wall_clock = time.time()
        image = self.renderer.render(index, wall_clock)
        if self.overlay is not None:
            self.overlay(image, wall_clock)
        yuv = np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420), dtype=np.uint8)
        return av.VideoFrame.from_ndarray(yuv, format="yuv420p")

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = self._clock()
        index = self.frames
        delay = self._start + index / self.fps - self._clock()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -1.0:
            # Far behind (the process was stalled): skip ahead instead of bursting.
            self._start = self._clock() - index / self.fps

        frame = await asyncio.to_thread(self._frame, index)
        frame.pts = index * VIDEO_CLOCK_RATE // self.fps
        frame.time_base = VIDEO_TIME_BASE
        self.frames += 1
        return frame
