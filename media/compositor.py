"""The call composite: every participant's tile on one canvas.

Sans-I/O and clock-free: the caller says what each tile shows (a video frame,
a snapshot, or nothing, which draws a name card) and who is speaking; the
compositor lays the tiles out (a grid, or the active speaker large) and draws
name labels and a speaking indicator. Tile pictures may be decoded
``av.VideoFrame`` s, scaled straight into their cell in YUV, or BGR arrays
(snapshots) of any size. The canvas is I420 (see :mod:`media.planar`); the
name cards, labels and scaled snapshots are drawn once and cached.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import av
import cv2
import numpy as np
from numpy.typing import NDArray

from media.planar import I420, yuv

logger = logging.getLogger(__name__)

Image = NDArray[np.uint8]
Picture = Image | av.VideoFrame
Layout = Literal["grid", "speaker"]


@runtime_checkable
class PlanarTileOverlay(Protocol):
    """Draws onto one tile's I420 picture in place, given the composite's time.

    Cheaper than a BGR hook: only the region the overlay covers needs to
    leave YUV (see :class:`media.overlays.tile.TileSensorOverlay`).
    """

    def draw_planar(self, picture: I420, now: float) -> None: ...


TileOverlay = Callable[[Image, float], None] | PlanarTileOverlay
"""Draws onto one tile's picture in place, given the composite's time
(seconds); the seam for per-participant sensor overlays. A plain callable
gets the whole tile as BGR; a :class:`PlanarTileOverlay` gets its I420."""

BACKGROUND = (24, 24, 24)
CARD = (58, 50, 44)
SPEAKING = (80, 220, 60)
LABEL_BACKGROUND = (0, 0, 0)
LABEL_TEXT = (255, 255, 255)
GAP = 4


@dataclass(frozen=True)
class Rect:
    x: int
    y: int
    width: int
    height: int

    @property
    def centre(self) -> tuple[int, int]:
        return self.x + self.width // 2, self.y + self.height // 2


@dataclass
class Tile:
    """What one participant's tile shows."""

    user_id: str
    label: str
    picture: Picture | None = None
    """None: a name card (audio only, or nothing to show yet)."""
    snapshot: bool = False
    """The picture is the participant's latest snapshot, not live video."""
    speaking: bool = False


def grid_cells(count: int, width: int, height: int, gap: int = GAP) -> list[Rect]:
    """``count`` equal cells filling a ``width`` x ``height`` canvas, row by row.

    The column count is the one that makes 16:9 cells largest.
    """
    if count <= 0:
        return []
    best: tuple[float, int] = (-1.0, 1)
    for columns in range(1, count + 1):
        rows = math.ceil(count / columns)
        cell_w = (width - gap * (columns + 1)) / columns
        cell_h = (height - gap * (rows + 1)) / rows
        scale = min(cell_w / 16, cell_h / 9)
        if scale > best[0]:
            best = (scale, columns)
    columns = best[1]
    rows = math.ceil(count / columns)
    cell_w = (width - gap * (columns + 1)) // columns
    cell_h = (height - gap * (rows + 1)) // rows
    cells = []
    for index in range(count):
        row, column = divmod(index, columns)
        # The last row is centred when it is not full.
        in_row = min(columns, count - row * columns)
        offset = (width - in_row * cell_w - gap * (in_row + 1)) // 2
        x = offset + gap + column * (cell_w + gap)
        y = gap + row * (cell_h + gap)
        cells.append(Rect(x, y, cell_w, cell_h))
    return cells


def speaker_cells(count: int, width: int, height: int, gap: int = GAP) -> list[Rect]:
    """The first cell large on top, the others in a strip below it."""
    if count <= 1:
        return grid_cells(count, width, height, gap)
    strip = height // 4
    main = Rect(gap, gap, width - 2 * gap, height - strip - 3 * gap)
    others = count - 1
    cell_w = (width - gap * (others + 1)) // others
    y = main.y + main.height + gap
    return [main] + [
        Rect(gap + i * (cell_w + gap), y, cell_w, strip) for i in range(others)
    ]


def fit(width: int, height: int, cell: Rect) -> Rect:
    """The largest rectangle of the picture's aspect ratio centred in ``cell``."""
    if width <= 0 or height <= 0:
        return cell
    scale = min(cell.width / width, cell.height / height)
    w = max(2, min(cell.width, round(width * scale)))
    h = max(2, min(cell.height, round(height * scale)))
    return Rect(cell.x + (cell.width - w) // 2, cell.y + (cell.height - h) // 2, w, h)


class Compositor:
    """Draws the composite canvas of ``width`` x ``height`` from the tiles.

    Args:
        tile_overlays: per user id, a hook drawn onto that participant's
            picture (as BGR) after it is placed: sensor widgets, for example.
    """

    def __init__(
        self,
        width: int = 1280,
        height: int = 720,
        *,
        layout: Layout = "grid",
        tile_overlays: Mapping[str, TileOverlay] | None = None,
    ) -> None:
        if width % 2 or height % 2:
            raise ValueError("the composite's width and height must be even")
        self.width = width
        self.height = height
        self.layout = layout
        self.tile_overlays: dict[str, TileOverlay] = dict(tile_overlays or {})
        self._canvas = I420.blank(width, height, BACKGROUND)
        self._background = yuv(BACKGROUND)
        self._speaking = yuv(SPEAKING)
        self._cards: dict[tuple[str, int, int], I420] = {}
        self._labels: dict[tuple[str, int], I420] = {}
        self._stills: dict[str, tuple[Image, tuple[int, int, bool], I420]] = {}
        self.areas: dict[str, Rect] = {}
        """Where each participant's picture (or card) was placed last render."""

    def cells(self, tiles: Sequence[Tile]) -> list[Rect]:
        """The cell of each tile, in the order given."""
        if self.layout == "speaker":
            return speaker_cells(len(tiles), self.width, self.height)
        return grid_cells(len(tiles), self.width, self.height)

    def order(self, tiles: Sequence[Tile]) -> list[Tile]:
        """Tiles in drawing order: in the speaker layout a speaker comes first."""
        if self.layout != "speaker":
            return list(tiles)
        speaking = [t for t in tiles if t.speaking]
        if not speaking:
            return list(tiles)
        first = speaking[0]
        return [first, *(t for t in tiles if t is not first)]

    def render(self, tiles: Sequence[Tile], now: float = 0.0) -> av.VideoFrame:
        """The composite of ``tiles`` as a yuv420p frame."""
        canvas = self._canvas
        canvas.fill(0, 0, self.width, self.height, self._background)
        self.areas.clear()
        ordered = self.order(tiles)
        for tile, cell in zip(ordered, self.cells(ordered), strict=True):
            self._draw_tile(canvas, tile, _even(cell), now)
        users = {tile.user_id for tile in tiles}
        for user_id in [u for u in self._stills if u not in users]:
            del self._stills[user_id]
        return canvas.to_frame()

    def render_bgr(self, tiles: Sequence[Tile], now: float = 0.0) -> Image:
        """The composite as a BGR image (for previews and tests)."""
        self.render(tiles, now)
        return self._canvas.to_bgr()

    def _draw_tile(self, canvas: I420, tile: Tile, cell: Rect, now: float) -> None:
        picture = tile.picture
        overlay = self.tile_overlays.get(tile.user_id)
        # Cards and stills are cached: an overlay draws onto a copy.
        if picture is None:
            area = cell
            placed = self._card(tile.label, cell.width, cell.height)
            if isinstance(overlay, PlanarTileOverlay):
                placed = placed.copy()
                overlay.draw_planar(placed, now)
        else:
            if isinstance(picture, av.VideoFrame):
                area = _even(fit(picture.width, picture.height, cell))
                placed = I420.from_frame(picture, area.width, area.height)
            else:
                area = _even(fit(picture.shape[1], picture.shape[0], cell))
                placed = self._still(tile.user_id, picture, area, tile.snapshot)
            if isinstance(overlay, PlanarTileOverlay):
                if not isinstance(picture, av.VideoFrame):
                    placed = placed.copy()
                overlay.draw_planar(placed, now)
            elif overlay is not None:
                image = placed.to_bgr()
                overlay(image, now)
                placed = I420.from_bgr(image)
        canvas.paste(placed, area.x, area.y)
        self.areas[tile.user_id] = area
        label = tile.label + ("  (snapshot)" if tile.snapshot else "")
        self._draw_label(canvas, label, cell)
        if tile.speaking:
            t = max(4, cell.height // 90) & ~1
            colour = self._speaking
            canvas.fill(cell.x, cell.y, cell.width, t, colour)
            canvas.fill(cell.x, cell.y + cell.height - t, cell.width, t, colour)
            canvas.fill(cell.x, cell.y, t, cell.height, colour)
            canvas.fill(cell.x + cell.width - t, cell.y, t, cell.height, colour)

    def _still(self, user_id: str, image: Image, area: Rect, dim: bool) -> I420:
        key = (area.width, area.height, dim)
        cached = self._stills.get(user_id)
        if cached is not None and cached[0] is image and cached[1] == key:
            return cached[2]
        scaled = cv2.resize(
            image, (area.width, area.height), interpolation=cv2.INTER_AREA
        )
        still = I420.from_bgr(np.ascontiguousarray(scaled))
        if dim:
            # Dimmed, so a still picture does not pass for live video.
            still.dim(0.6)
        self._stills[user_id] = (image, key, still)
        return still

    def _card(self, label: str, width: int, height: int) -> I420:
        key = (label, width, height)
        card = self._cards.get(key)
        if card is None:
            card = self._cards[key] = I420.from_bgr(_draw_card(label, width, height))
            if len(self._cards) > 64:
                self._cards.pop(next(iter(self._cards)))
        return card

    def _draw_label(self, canvas: I420, text: str, cell: Rect) -> None:
        scale = max(0.4, cell.height / 480)
        key = (text, round(scale * 100))
        label = self._labels.get(key)
        if label is None:
            label = self._labels[key] = I420.from_bgr(_draw_label(text, scale))
            if len(self._labels) > 256:
                self._labels.pop(next(iter(self._labels)))
        pad = max(4, int(6 * scale))
        width = min(label.width, cell.width - 2 * pad) & ~1
        if width <= 0:
            return
        if width < label.width:
            label = label.crop(0, 0, width, label.height)
        canvas.paste(label, cell.x + pad, cell.y + cell.height - pad - label.height)


def _even(rect: Rect) -> Rect:
    x, y = rect.x & ~1, rect.y & ~1
    return Rect(
        x, y, (rect.width - (rect.x - x)) & ~1, (rect.height - (rect.y - y)) & ~1
    )


def _draw_card(label: str, width: int, height: int) -> Image:
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:] = CARD
    radius = max(8, min(width, height) // 5)
    cx, cy = width // 2, height // 2
    cv2.circle(image, (cx, cy), radius, (120, 100, 86), -1, cv2.LINE_AA)
    initials = "".join(part[0] for part in label.split()[:2]).upper() or "?"
    scale = radius / 28
    (w, h), _ = cv2.getTextSize(initials, cv2.FONT_HERSHEY_SIMPLEX, scale, 2)
    cv2.putText(
        image,
        initials,
        (cx - w // 2, cy + h // 2),
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        LABEL_TEXT,
        2,
        cv2.LINE_AA,
    )
    return image


def _draw_label(text: str, scale: float) -> Image:
    (w, h), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    pad = max(3, int(6 * scale))
    width = (w + 2 * pad + 1) & ~1
    height = (h + baseline + 2 * pad + 1) & ~1
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:] = LABEL_BACKGROUND
    cv2.putText(
        image,
        text,
        (pad, height - pad - baseline),
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        LABEL_TEXT,
        1,
        cv2.LINE_AA,
    )
    return image
