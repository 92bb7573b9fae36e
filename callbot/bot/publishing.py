"""The bot's published tracks: its sources as the tier and the detector need them.

:class:`PublishedVideoTrack` sits between a video source and the sender: it
keeps the source's latest frame (for snapshots), drops frames down to the
tier's rate, scales to the current size, pauses or shows a still picture.
:class:`PublishedAudioTrack` passes audio through and shows every frame to a
listener (the speaking detector) on its way to the encoder.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import av
import numpy as np
from aiortc import MediaStreamTrack

from callbot.bot.tiers import VideoSettings

logger = logging.getLogger(__name__)

# A frame up to this early (seconds) still counts as on time for its slot.
_SLOT_TOLERANCE = 0.002


class PublishedVideoTrack(MediaStreamTrack):
    """A video source paced and sized by :class:`VideoSettings`."""

    kind = "video"

    def __init__(self, source: MediaStreamTrack, settings: VideoSettings) -> None:
        super().__init__()
        self.source = source
        self.settings = settings
        self.latest: av.VideoFrame | None = None
        self.frames = 0
        self._next_slot: float | None = None
        self._still: av.VideoFrame | None = None

    def apply(self, settings: VideoSettings) -> None:
        """Use ``settings`` from the next source frame on."""
        if settings.fps != self.settings.fps:
            self._next_slot = None
        self.settings = settings

    async def recv(self) -> av.VideoFrame:
        while True:
            frame = await self.source.recv()
            if not isinstance(frame, av.VideoFrame):
                raise TypeError(f"video source gave {type(frame).__name__}")
            self.latest = frame
            settings = self.settings
            if frame.pts is None or frame.time_base is None:
                at = None
            else:
                at = float(frame.pts * frame.time_base)
            if (
                settings.paused
                or settings.fps <= 0
                or (at is not None and not self._take(at, settings.fps))
            ):
                # Dropped; let others run even if the source never waits.
                await asyncio.sleep(0)
                continue
            out = self._shape(frame, settings)
            self.frames += 1
            return out

    def stop(self) -> None:
        self.source.stop()
        super().stop()

    def _take(self, at: float, fps: int) -> bool:
        """Whether the frame at ``at`` fills the next slot of a ``fps`` grid."""
        slot = self._next_slot
        if slot is not None and at < slot - _SLOT_TOLERANCE:
            return False
        interval = 1.0 / fps
        if slot is None or at - slot > interval:
            # First frame, or the source jumped ahead: restart the grid here.
            self._next_slot = at + interval
        else:
            self._next_slot = slot + interval
        return True

    def _shape(self, frame: av.VideoFrame, settings: VideoSettings) -> av.VideoFrame:
        if settings.static:
            out = self._still_frame(settings.width, settings.height)
        elif (frame.width, frame.height) != (settings.width, settings.height):
            out = frame.reformat(
                width=settings.width, height=settings.height, format="yuv420p"
            )
        else:
            return frame
        out.pts = frame.pts
        out.time_base = frame.time_base
        return out

    def _still_frame(self, width: int, height: int) -> av.VideoFrame:
        still = self._still
        if still is None or (still.width, still.height) != (width, height):
            grey = np.full((height, width, 3), 96, dtype=np.uint8)
            still = av.VideoFrame.from_ndarray(grey, format="rgb24").reformat(
                format="yuv420p"
            )
            self._still = still
        # A new frame object each time: the sender stamps pts on it.
        return av.VideoFrame.from_ndarray(still.to_ndarray(), format="yuv420p")


class PublishedAudioTrack(MediaStreamTrack):
    """An audio source whose frames ``listener`` sees before the encoder does."""

    kind = "audio"

    def __init__(
        self,
        source: MediaStreamTrack,
        listener: Callable[[av.AudioFrame], None] | None = None,
    ) -> None:
        super().__init__()
        self.source = source
        self.listener = listener
        self.frames = 0

    async def recv(self) -> av.AudioFrame:
        frame = await self.source.recv()
        if not isinstance(frame, av.AudioFrame):
            raise TypeError(f"audio source gave {type(frame).__name__}")
        self.frames += 1
        listener = self.listener
        if listener is not None:
            try:
                listener(frame)
            except Exception:
                # The call goes on without speaking detection.
                logger.exception("published audio listener failed; detached")
                self.listener = None
        return frame

    def stop(self) -> None:
        self.source.stop()
        super().stop()
