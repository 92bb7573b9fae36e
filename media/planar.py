"""I420 (yuv420p) pictures as numpy planes, so the composite never leaves YUV.

Decoded video arrives in I420 and the encoder wants I420; drawing the
composite in the same layout saves two colour conversions of the whole
canvas per frame. A picture is one (height * 3 / 2, width) uint8 buffer, as
PyAV's ``to_ndarray``/``from_ndarray`` use it for yuv420p, with the Y, U and V
planes as views into it. Sizes and positions are even.
"""

from __future__ import annotations

import av
import numpy as np
from numpy.typing import NDArray

Buffer = NDArray[np.uint8]
Bgr = NDArray[np.uint8]


class I420:
    """A yuv420p picture backed by one contiguous buffer."""

    def __init__(self, buffer: Buffer) -> None:
        rows, width = buffer.shape
        height = rows * 2 // 3
        if width % 2 or height % 2 or rows != height * 3 // 2:
            raise ValueError(f"not an I420 buffer: {buffer.shape}")
        self.buffer = buffer
        self.width = width
        self.height = height
        flat = buffer.reshape(-1)
        size, quarter = width * height, width * height // 4
        self.y = buffer[:height]
        self.u = flat[size : size + quarter].reshape(height // 2, width // 2)
        self.v = flat[size + quarter :].reshape(height // 2, width // 2)

    @classmethod
    def blank(cls, width: int, height: int, bgr: tuple[int, int, int]) -> I420:
        picture = cls(np.empty((height * 3 // 2, width), dtype=np.uint8))
        picture.fill(0, 0, width, height, yuv(bgr))
        return picture

    @classmethod
    def from_frame(
        cls, frame: av.VideoFrame, width: int | None = None, height: int | None = None
    ) -> I420:
        """A decoded frame, scaled to ``width`` x ``height`` if given."""
        scaled = frame.reformat(
            width=width or frame.width, height=height or frame.height, format="yuv420p"
        )
        return cls(np.ascontiguousarray(scaled.to_ndarray(), dtype=np.uint8))

    @classmethod
    def from_bgr(cls, image: Bgr) -> I420:
        """A BGR image (even size) in the encoder's limited-range BT.601."""
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        return cls.from_frame(frame)

    def to_bgr(self) -> Bgr:
        frame = self.to_frame()
        return np.asarray(frame.to_ndarray(format="bgr24"), dtype=np.uint8)

    def to_frame(self) -> av.VideoFrame:
        return av.VideoFrame.from_ndarray(self.buffer, format="yuv420p")

    def fill(
        self, x: int, y: int, w: int, h: int, colour: tuple[int, int, int]
    ) -> None:
        """Fill a rectangle (even position and size) with a YUV colour."""
        x, y, w, h = x & ~1, y & ~1, w & ~1, h & ~1
        if w <= 0 or h <= 0:
            return
        self.y[y : y + h, x : x + w] = colour[0]
        self.u[y // 2 : (y + h) // 2, x // 2 : (x + w) // 2] = colour[1]
        self.v[y // 2 : (y + h) // 2, x // 2 : (x + w) // 2] = colour[2]

    def paste(self, other: I420, x: int, y: int) -> None:
        """Copy ``other`` in with its top-left corner at (x, y), clipped."""
        x, y = x & ~1, y & ~1
        w = min(other.width, self.width - x)
        h = min(other.height, self.height - y)
        if w <= 0 or h <= 0:
            return
        self.y[y : y + h, x : x + w] = other.y[:h, :w]
        self.u[y // 2 : (y + h) // 2, x // 2 : (x + w) // 2] = other.u[
            : h // 2, : w // 2
        ]
        self.v[y // 2 : (y + h) // 2, x // 2 : (x + w) // 2] = other.v[
            : h // 2, : w // 2
        ]

    def crop(self, x: int, y: int, w: int, h: int) -> I420:
        """A copy of a rectangle (even position and size)."""
        x, y, w, h = x & ~1, y & ~1, w & ~1, h & ~1
        out = I420(np.empty((h * 3 // 2, w), dtype=np.uint8))
        out.y[:] = self.y[y : y + h, x : x + w]
        out.u[:] = self.u[y // 2 : (y + h) // 2, x // 2 : (x + w) // 2]
        out.v[:] = self.v[y // 2 : (y + h) // 2, x // 2 : (x + w) // 2]
        return out

    def copy(self) -> I420:
        """A copy with its own buffer."""
        return I420(self.buffer.copy())

    def dim(self, factor: float) -> None:
        """Darken and desaturate in place (``factor`` 0..1)."""
        np.multiply(self.y, factor, out=self.y, casting="unsafe")
        for plane in (self.u, self.v):
            shifted = (plane.astype(np.int16) - 128) * factor + 128
            plane[:] = shifted.astype(np.uint8)


def yuv(bgr: tuple[int, int, int]) -> tuple[int, int, int]:
    """A BGR colour in limited-range BT.601 YUV, as the encoder sees it."""
    b, g, r = bgr
    y = 16 + (65.738 * r + 129.057 * g + 25.064 * b) / 256
    u = 128 + (-37.945 * r - 74.494 * g + 112.439 * b) / 256
    v = 128 + (112.439 * r - 94.154 * g - 18.285 * b) / 256
    return round(y), round(u), round(v)
