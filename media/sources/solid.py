"""A solid colour over a video source's frames, for tests that find a bot by colour."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray


def parse_colour(text: str) -> tuple[int, int, int]:
    """``"#rrggbb"`` as a BGR tuple; ValueError if it is not one."""
    digits = text.removeprefix("#")
    if len(digits) != 6:
        raise ValueError(f"colour {text!r} is not #rrggbb")
    r, g, b = (int(digits[i : i + 2], 16) for i in (0, 2, 4))
    return b, g, r


def solid_fill(
    colour: str, then: Callable[[NDArray[np.uint8], float], None] | None = None
) -> Callable[[NDArray[np.uint8], float], None]:
    """A frame hook that paints the whole frame ``colour``, then runs ``then``."""
    bgr = parse_colour(colour)

    def fill(image: NDArray[np.uint8], wall_clock: float) -> None:
        image[:] = bgr
        if then is not None:
            then(image, wall_clock)

    return fill
