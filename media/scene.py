"""Who the composite shows and what each tile holds at a given time.

Sans-I/O: participants, their latest video frame (with the time it came),
their latest snapshot and their speaking state go in; :meth:`CallScene.tiles`
gives the tiles for ``now``. A participant whose video is absent or has
stalled for ``stall_after`` seconds is shown from their latest snapshot, and
one with neither as a name card.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

from media.compositor import Image, Picture, Tile

logger = logging.getLogger(__name__)


@dataclass
class ParticipantView:
    user_id: str
    label: str
    video: Picture | None = None
    video_at: float | None = None
    snapshot_jpeg: bytes | None = None
    snapshot: Image | None = None
    speaking: bool = False


class CallScene:
    """The composite's participants, in the order they joined."""

    def __init__(self, *, stall_after: float = 1.0) -> None:
        self.stall_after = stall_after
        self.participants: dict[str, ParticipantView] = {}

    def joined(self, user_id: str, display_name: str | None = None) -> None:
        view = self.participants.get(user_id)
        if view is None:
            self.participants[user_id] = ParticipantView(
                user_id, display_name or user_id
            )
        elif display_name:
            view.label = display_name

    def left(self, user_id: str) -> None:
        self.participants.pop(user_id, None)

    def video(self, user_id: str, picture: Picture, now: float) -> None:
        self.joined(user_id)
        view = self.participants[user_id]
        view.video, view.video_at = picture, now

    def video_ended(self, user_id: str) -> None:
        view = self.participants.get(user_id)
        if view is not None:
            view.video = view.video_at = None

    def snapshot(self, user_id: str, jpeg: bytes) -> None:
        """Keep ``user_id``'s latest snapshot; it is decoded when first shown."""
        self.joined(user_id)
        view = self.participants[user_id]
        view.snapshot_jpeg, view.snapshot = jpeg, None

    def speaking(self, user_id: str, speaking: bool) -> None:
        view = self.participants.get(user_id)
        if view is not None:
            view.speaking = speaking

    def tiles(self, now: float) -> list[Tile]:
        """One tile per participant: live video, else snapshot, else a name card."""
        tiles = []
        for view in self.participants.values():
            tile = Tile(view.user_id, view.label, speaking=view.speaking)
            live = (
                view.video is not None
                and view.video_at is not None
                and now - view.video_at <= self.stall_after
            )
            if live:
                tile.picture = view.video
            elif (snapshot := self._snapshot(view)) is not None:
                tile.picture, tile.snapshot = snapshot, True
            elif view.video is not None:
                # Stalled and no snapshot: the last frame is still the best.
                tile.picture = view.video
            tiles.append(tile)
        return tiles

    @staticmethod
    def _snapshot(view: ParticipantView) -> Image | None:
        if view.snapshot is None and view.snapshot_jpeg is not None:
            data = np.frombuffer(view.snapshot_jpeg, dtype=np.uint8)
            decoded = cv2.imdecode(data, cv2.IMREAD_COLOR)
            if decoded is None:
                logger.warning("snapshot of %s is not a JPEG", view.user_id)
            view.snapshot_jpeg = None
            view.snapshot = None if decoded is None else np.asarray(decoded, np.uint8)
        return view.snapshot
