"""A frame code: frame counter and send time drawn as blocks into a video frame.

The test pattern carries, in every frame, a grid of 4 x 16 black or white
cells in its top-right corner: a 20-bit frame counter, the sender's wall
clock in milliseconds (36 bits, about 795 days before it wraps) and a CRC-8
over both. Cells are sized in fractions of the frame (1/40 of the width,
1/30 of the height: 16 x 16 pixels at 640x480, aligned to VP8 macroblocks
there), so the code survives scaling and VP8 compression at the bitrates of
every tier. A reader samples the middle of each cell and accepts a frame only
if every cell is clearly black or white and the CRC matches, so frames
without the code (a browser's camera) give ``None``.

Next to the grid a flash cell block turns white for :data:`FLASH_SECONDS` at
the start of every wall-clock second; the tone source beeps at the same
moments (:mod:`media.markers.beeps`).

Everything here is pure: images and times in, images and values out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

GRID_COLUMNS = 40
"""The frame width in cells."""
GRID_ROWS = 30
"""The frame height in cells."""
CODE_ROWS = 4
CODE_COLUMNS = 16
CODE_LEFT = 22
"""First cell column of the code (cells 22-37, rows 1-4)."""
CODE_TOP = 1
FLASH_LEFT = 38
"""The flash block: cells 38-39, rows 1-4."""
FLASH_COLUMNS = 2
FLASH_SECONDS = 0.1
PERIOD_SECONDS = 1.0

COUNTER_BITS = 20
TIME_BITS = 36
CRC_BITS = 8
_BITS = COUNTER_BITS + TIME_BITS + CRC_BITS
COUNTER_MODULO = 1 << COUNTER_BITS
TIME_MODULO = 1 << TIME_BITS

_BLACK = 16
_WHITE = 235
# A sampled cell is undecided between these levels (video luma, 16-235).
_LOW, _HIGH = 80, 170


@dataclass(frozen=True)
class FrameCode:
    """What a frame carries: its counter (mod 2^20) and send time (ms, mod 2^36)."""

    counter: int
    sent_ms: int


def crc8(data: bytes) -> int:
    """CRC-8 with polynomial 0x07 and a final xor of 0x55 (the ATM HEC one).

    The final xor keeps a uniform dark or light area from reading as a code.
    """
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc ^ 0x55


def code_bits(counter: int, sent_ms: int) -> list[int]:
    """The 64 bits of the code, most significant first."""
    payload = ((counter % COUNTER_MODULO) << TIME_BITS) | (sent_ms % TIME_MODULO)
    value = (payload << CRC_BITS) | crc8(payload.to_bytes(7, "big"))
    return [(value >> (_BITS - 1 - i)) & 1 for i in range(_BITS)]


def is_flash(wall_clock: float) -> bool:
    """Whether the flash (and the beep) is on at ``wall_clock`` seconds."""
    return (wall_clock % PERIOD_SECONDS) < FLASH_SECONDS


def _cell(width: int, height: int, column: int, row: int) -> tuple[int, int, int, int]:
    x0 = column * width // GRID_COLUMNS
    x1 = (column + 1) * width // GRID_COLUMNS
    y0 = row * height // GRID_ROWS
    y1 = (row + 1) * height // GRID_ROWS
    return x0, x1, y0, y1


def draw_frame_code(image: NDArray[np.uint8], counter: int, wall_clock: float) -> None:
    """Draw the code of frame ``counter`` sent at ``wall_clock`` s, in place.

    ``image`` is BGR (or any H x W x C / H x W array); cells are grey levels.
    """
    height, width = image.shape[:2]
    bits = code_bits(counter, int(wall_clock * 1000))
    for i, bit in enumerate(bits):
        row, column = divmod(i, CODE_COLUMNS)
        x0, x1, y0, y1 = _cell(width, height, CODE_LEFT + column, CODE_TOP + row)
        image[y0:y1, x0:x1] = _WHITE if bit else _BLACK
    level = _WHITE if is_flash(wall_clock) else _BLACK
    x0, _, y0, _ = _cell(width, height, FLASH_LEFT, CODE_TOP)
    _, x1, _, y1 = _cell(
        width, height, FLASH_LEFT + FLASH_COLUMNS - 1, CODE_TOP + CODE_ROWS - 1
    )
    image[y0:y1, x0:x1] = level


def _sample(luma: NDArray[np.uint8], column: int, row: int) -> float:
    height, width = luma.shape[:2]
    x0, x1, y0, y1 = _cell(width, height, column, row)
    # The middle half of the cell: its edges are where compression smears.
    dx, dy = max(1, (x1 - x0) // 4), max(1, (y1 - y0) // 4)
    return float(luma[y0 + dy : y1 - dy, x0 + dx : x1 - dx].mean())


def read_frame_code(luma: NDArray[np.uint8]) -> FrameCode | None:
    """The code in a frame's luma plane (H x W), or None if it has none."""
    if luma.ndim != 2 or luma.shape[0] < GRID_ROWS or luma.shape[1] < GRID_COLUMNS:
        return None
    value = 0
    for i in range(_BITS):
        row, column = divmod(i, CODE_COLUMNS)
        level = _sample(luma, CODE_LEFT + column, CODE_TOP + row)
        if _LOW < level < _HIGH:
            return None
        value = (value << 1) | (level >= _HIGH)
    if value in (0, (1 << _BITS) - 1):
        return None
    payload = value >> CRC_BITS
    if crc8(payload.to_bytes(7, "big")) != value & 0xFF:
        return None
    return FrameCode(payload >> TIME_BITS, payload & (TIME_MODULO - 1))


def read_flash(luma: NDArray[np.uint8]) -> bool | None:
    """Whether the flash block is lit; None if it is neither clearly on nor off."""
    if luma.ndim != 2 or luma.shape[0] < GRID_ROWS or luma.shape[1] < GRID_COLUMNS:
        return None
    levels = [
        _sample(luma, FLASH_LEFT + c, CODE_TOP + r)
        for r in range(CODE_ROWS)
        for c in range(FLASH_COLUMNS)
    ]
    if all(level >= _HIGH for level in levels):
        return True
    if all(level <= _LOW for level in levels):
        return False
    return None


def unwrap_sent_ms(sent_ms: int, now_ms: int) -> int:
    """The full send time in ms nearest to ``now_ms`` with these low 36 bits."""
    base = now_ms - now_ms % TIME_MODULO
    best = base + sent_ms
    for candidate in (best - TIME_MODULO, best + TIME_MODULO):
        if abs(candidate - now_ms) < abs(best - now_ms):
            best = candidate
    return best


def unwrap_counter(counter: int, previous: int | None) -> int:
    """The frame counter extended past its 20-bit wrap, given the last one read."""
    if previous is None:
        return counter
    base = previous - previous % COUNTER_MODULO
    best = base + counter
    for candidate in (best - COUNTER_MODULO, best + COUNTER_MODULO):
        if abs(candidate - previous) < abs(best - previous):
            best = candidate
    return best
