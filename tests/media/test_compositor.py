"""The composite canvas: layout, pictures in their cells, cards, speaking."""

from __future__ import annotations

import av
import numpy as np
import pytest

from media.compositor import (
    BACKGROUND,
    CARD,
    Compositor,
    Tile,
    grid_cells,
    speaker_cells,
)
from media.planar import I420
from media.scene import CallScene
from tests.media.composite_checks import cell_colour, close_to

RED, BLUE, GREEN = (0, 0, 220), (220, 0, 0), (0, 200, 0)


def solid_frame(bgr: tuple[int, int, int], w: int = 640, h: int = 360) -> av.VideoFrame:
    image = np.full((h, w, 3), bgr, np.uint8)
    return av.VideoFrame.from_ndarray(image, format="bgr24").reformat(format="yuv420p")


@pytest.mark.parametrize(
    ("count", "shape"),
    [(1, (1, 1)), (2, (1, 2)), (3, (2, 2)), (4, (2, 2)), (5, (2, 3))],
)
def test_grid_cells_do_not_overlap_and_fill_rows(
    count: int, shape: tuple[int, int]
) -> None:
    cells = grid_cells(count, 1280, 720)
    assert len(cells) == count
    rows = sorted({c.y for c in cells})
    assert len(rows) == shape[0]
    assert max(sum(1 for c in cells if c.y == y) for y in rows) == shape[1]
    for i, a in enumerate(cells):
        assert a.x >= 0 and a.y >= 0
        assert a.x + a.width <= 1280 and a.y + a.height <= 720
        for b in cells[i + 1 :]:
            apart_x = a.x + a.width <= b.x or b.x + b.width <= a.x
            apart_y = a.y + a.height <= b.y or b.y + b.height <= a.y
            assert apart_x or apart_y


def test_each_picture_lands_in_its_own_cell() -> None:
    compositor = Compositor(1280, 720)
    tiles = [
        Tile("a", "alice", solid_frame(RED)),
        Tile("b", "bob", solid_frame(BLUE, 320, 240)),
        Tile("c", "carol", np.full((90, 160, 3), GREEN, np.uint8)),
    ]
    image = compositor.render_bgr(tiles)
    colours = [cell_colour(image, c) for c in compositor.cells(tiles)]
    assert close_to(colours[0], RED)
    assert close_to(colours[1], BLUE)
    assert close_to(colours[2], GREEN)


def test_card_for_no_picture_and_green_border_when_speaking() -> None:
    compositor = Compositor(640, 360)
    tiles = [Tile("a", "Alice Doe", None, speaking=True), Tile("b", "bob", None)]
    image = compositor.render_bgr(tiles)
    first, second = compositor.cells(tiles)
    # The card's own colour, not the background; the speaker's border is green.
    assert close_to(cell_colour(image, second), CARD, 10)
    assert not close_to(cell_colour(image, second), BACKGROUND, 10)
    b, g, r = image[first.y + 1, first.x + first.width // 2]
    assert g > 150 and r < 150 and b < 150
    b, g, r = image[second.y + 1, second.x + second.width // 2]
    assert g < 100


def test_snapshot_is_dimmed_and_labelled() -> None:
    compositor = Compositor(640, 360)
    white = np.full((120, 160, 3), 250, np.uint8)
    live = compositor.render_bgr([Tile("a", "alice", white)])
    still = compositor.render_bgr([Tile("a", "alice", white, snapshot=True)])
    (cell,) = grid_cells(1, 640, 360)
    assert cell_colour(live, cell)[0] > 230
    assert 120 < cell_colour(still, cell)[0] < 180


def test_speaker_layout_puts_the_speaker_in_the_large_cell() -> None:
    compositor = Compositor(1280, 720, layout="speaker")
    tiles = [
        Tile("a", "alice", solid_frame(RED)),
        Tile("b", "bob", solid_frame(BLUE), speaking=True),
    ]
    image = compositor.render_bgr(tiles)
    large = speaker_cells(2, 1280, 720)[0]
    assert close_to(cell_colour(image, large), BLUE)


def test_tile_overlay_draws_onto_its_participant_only() -> None:
    def mark(image: np.ndarray, now: float) -> None:  # type: ignore[type-arg]
        image[:] = (255, 255, 255)

    compositor = Compositor(1280, 720, tile_overlays={"b": mark})
    tiles = [Tile("a", "alice", solid_frame(RED)), Tile("b", "bob", solid_frame(BLUE))]
    image = compositor.render_bgr(tiles)
    a, b = compositor.cells(tiles)
    assert close_to(cell_colour(image, a), RED)
    assert close_to(cell_colour(image, b), (255, 255, 255), 10)


def test_scene_shows_snapshot_once_video_stalls() -> None:
    import cv2

    scene = CallScene(stall_after=1.0)
    scene.joined("a", "alice")
    scene.video("a", solid_frame(RED), now=10.0)
    ok, jpeg = cv2.imencode(".jpg", np.full((90, 160, 3), GREEN, np.uint8))
    assert ok
    scene.snapshot("a", jpeg.tobytes())
    (tile,) = scene.tiles(10.5)
    assert isinstance(tile.picture, av.VideoFrame) and not tile.snapshot
    (tile,) = scene.tiles(11.5)
    assert tile.snapshot and isinstance(tile.picture, np.ndarray)
    scene.video_ended("a")
    (tile,) = scene.tiles(11.5)
    assert tile.snapshot
    scene.joined("b")
    assert scene.tiles(12.0)[1].picture is None  # audio only: a name card


def test_i420_round_trip_keeps_colours() -> None:
    picture = I420.from_bgr(np.full((4, 6, 3), RED, np.uint8))
    assert picture.width == 6 and picture.height == 4
    assert close_to(tuple(int(v) for v in picture.to_bgr()[1, 1]), RED, 8)
