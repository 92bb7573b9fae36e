"""The overlays' own bitmap font, and reading text drawn with it back.

Digits and a few marks on a 5x7 grid, scaled by whole pixels. Because every
glyph is a known block of pixels, text drawn with it can be read back from a
frame (even after a lossy codec) by matching cells against the glyphs.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
import numpy.typing as npt

GLYPH_WIDTH = 5
GLYPH_HEIGHT = 7
# One blank column between glyphs.
ADVANCE = GLYPH_WIDTH + 1

_ROWS: dict[str, tuple[str, ...]] = {
    "0": (".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."),
    "1": ("..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "2": (".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"),
    "3": ("#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."),
    "4": ("...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."),
    "5": ("#####", "#....", "####.", "....#", "....#", "#...#", ".###."),
    "6": ("..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."),
    "7": ("#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."),
    "8": (".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."),
    "9": (".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."),
    "-": (".....", ".....", ".....", "#####", ".....", ".....", "....."),
    ".": (".....", ".....", ".....", ".....", ".....", ".##..", ".##.."),
    "?": (".###.", "#...#", "....#", "...#.", "..#..", ".....", "..#.."),
    "s": (".....", ".....", ".####", "#....", ".###.", "....#", "####."),
    "m": (".....", ".....", "##.#.", "#.#.#", "#.#.#", "#...#", "#...#"),
    "h": ("#....", "#....", "#.##.", "##..#", "#...#", "#...#", "#...#"),
    " ": (".....", ".....", ".....", ".....", ".....", ".....", "....."),
}
CHARACTERS = "".join(_ROWS)


def _bitmap(char: str) -> npt.NDArray[np.bool_]:
    rows = _ROWS[char]
    return np.array([[c == "#" for c in row] for row in rows], dtype=np.bool_)


_BITMAPS = {char: _bitmap(char) for char in _ROWS}


@lru_cache(maxsize=64)
def glyph(char: str, scale: int) -> npt.NDArray[np.bool_]:
    """The pixel mask of one character at ``scale`` pixels per font dot."""
    bitmap = _BITMAPS.get(char, _BITMAPS["?"])
    return np.kron(bitmap, np.ones((scale, scale), dtype=np.bool_)).astype(np.bool_)


def text_size(text: str, scale: int) -> tuple[int, int]:
    """Width and height in pixels of ``text`` at ``scale``."""
    if not text:
        return 0, GLYPH_HEIGHT * scale
    return (len(text) * ADVANCE - 1) * scale, GLYPH_HEIGHT * scale


def draw_text(
    image: npt.NDArray[np.uint8],
    text: str,
    origin: tuple[int, int],
    scale: int,
    colour: tuple[int, int, int],
) -> None:
    """Draw ``text`` with its top-left corner at ``origin``; clipped to the image."""
    x, y = origin
    height, width = image.shape[:2]
    for char in text:
        mask = glyph(char, scale)
        gh, gw = mask.shape
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + gw, width), min(y + gh, height)
        if x1 > x0 and y1 > y0:
            part = mask[y0 - y : y1 - y, x0 - x : x1 - x]
            image[y0:y1, x0:x1][part] = colour
        x += ADVANCE * scale


def read_text(
    image: npt.NDArray[np.uint8],
    origin: tuple[int, int],
    scale: int,
    max_chars: int,
    *,
    alphabet: str = "0123456789-.",
) -> str:
    """Read text drawn by :func:`draw_text` at ``origin`` and ``scale``.

    Each cell is binarised against the text region's own contrast and matched
    to the closest glyph of ``alphabet``; reading stops at the first blank
    cell. Works on decoded video as long as a font dot spans 3 or more pixels.
    """
    x, y = origin
    w, h = text_size("0" * max_chars, scale)
    region = image[y : y + h, x : x + w]
    if region.size == 0:
        return ""
    grey = cv2.cvtColor(region, cv2.COLOR_BGR2GRAY) if region.ndim == 3 else region
    grey = grey.astype(np.float32)
    low, high = float(grey.min()), float(grey.max())
    if high - low < 40:
        return ""
    ink = grey > (low + high) / 2

    out = []
    for i in range(max_chars):
        cell = ink[:, i * ADVANCE * scale : (i * ADVANCE + GLYPH_WIDTH) * scale]
        if cell.shape[1] < GLYPH_WIDTH * scale or cell.mean() < 0.04:
            break
        best, best_score = "", -1.0
        for char in alphabet:
            score = float((glyph(char, scale) == cell).mean())
            if score > best_score:
                best, best_score = char, score
        out.append(best)
    return "".join(out)
