"""Reading a composite back: streams, duration, a frame's cell colours, HLS."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from numpy.typing import NDArray

from media.compositor import Rect, grid_cells


def streams(path: Path) -> tuple[list[str], float]:
    """Codec names and duration (seconds) of a media file."""
    with av.open(str(path)) as container:
        names = [s.codec_context.name for s in container.streams]
        return names, (container.duration or 0) / 1_000_000


def frame_at(path: Path, seconds: float) -> NDArray[np.uint8]:
    """The first decoded video frame at or after ``seconds``, as BGR."""
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            if float(frame.time or 0.0) >= seconds:
                return np.asarray(frame.to_ndarray(format="bgr24"), np.uint8)
    raise AssertionError(f"no frame at {seconds} s in {path}")


def cell_colour(image: NDArray[np.uint8], cell: Rect) -> tuple[int, int, int]:
    """Median BGR of the middle half of ``cell`` (labels stay outside it)."""
    x0, y0 = cell.x + cell.width // 4, cell.y + cell.height // 4
    patch = image[y0 : y0 + cell.height // 2, x0 : x0 + cell.width // 2]
    b, g, r = np.median(patch.reshape(-1, 3), axis=0)
    return int(b), int(g), int(r)


def grid_colours(image: NDArray[np.uint8], count: int) -> list[tuple[int, int, int]]:
    height, width = image.shape[:2]
    return [cell_colour(image, cell) for cell in grid_cells(count, width, height)]


def close_to(
    colour: tuple[int, int, int], expected: tuple[int, int, int], tolerance: int = 40
) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(colour, expected, strict=True))


def playlist_segments(playlist: Path) -> list[Path]:
    lines = playlist.read_text().splitlines()
    return [
        playlist.parent / line for line in lines if line and not line.startswith("#")
    ]


def is_fast_start(path: Path) -> bool:
    """The MP4's index (moov) comes before its media (mdat)."""
    data = path.read_bytes()
    return 0 <= data.find(b"moov") < data.find(b"mdat")
