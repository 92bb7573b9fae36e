"""A media file's video as a track, looped and paced in real time.

VP8 (in WebM or Matroska) is passed through as ``av.Packet`` s, which
aiortc's sender packetizes without re-encoding. Any other codec (H.264 in
MP4, ...) is decoded and handed over as frames, which aiortc encodes.

Pre-encoded VP8 cannot answer a keyframe request: a subscriber that joins
late decodes nothing until the file's next keyframe. Files meant for this
should carry a keyframe at least every second or two (for example
``ffmpeg -i in.mp4 -c:v libvpx -g 30 -keyint_min 30 out.webm`` at 30 fps).
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

logger = logging.getLogger(__name__)

VIDEO_TIME_BASE = fractions.Fraction(1, 90000)
_DEFAULT_FRAME = fractions.Fraction(1, 30)
_RESYNC_AFTER = 1.0  # seconds late before the pacing starts over


class VideoFileError(ValueError):
    """The file cannot be read as video."""


def probe_video(path: str | Path) -> str:
    """The codec name of ``path``'s first video stream; VideoFileError if none."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoFileError(f"{path} has no video stream")
            return str(container.streams.video[0].codec_context.name)
    except (av.error.FFmpegError, OSError) as exc:
        raise VideoFileError(f"cannot open {path}: {exc}") from exc


class FileVideoTrack(MediaStreamTrack):
    """The video of a file, looped; VP8 as packets, anything else as frames."""

    kind = "video"

    def __init__(
        self,
        path: str | Path,
        *,
        loop: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.path = Path(path)
        self.loop = loop
        self.frames = 0
        self.loops = 0
        self._clock = clock
        self._container: Any = av.open(str(self.path))
        self._stream: Any = self._container.streams.video[0]
        self.passthrough = self._stream.codec_context.name == "vp8"
        self._items: Any = None
        self._offset = 0.0  # seconds added to the file's times (loops)
        self._first: float | None = None  # the file's first time
        self._last = 0.0
        self._interval = float(_DEFAULT_FRAME)
        self._start: float | None = None
        logger.debug(
            "video file %s: %s%s",
            self.path.name,
            "VP8 passed through" if self.passthrough else "decoded, re-encoded",
            ", looped" if loop else "",
        )

    async def recv(self) -> av.Packet[Any] | av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        item, seconds = self._next()
        await self._pace(seconds)
        self.frames += 1
        pts = round(seconds * 90000)
        if isinstance(item, av.Packet):
            packet = av.Packet(bytes(item))
            packet.pts = packet.dts = pts
            packet.time_base = VIDEO_TIME_BASE
            return packet
        frame: av.VideoFrame = item
        frame.pts = pts
        frame.time_base = VIDEO_TIME_BASE
        return frame

    def stop(self) -> None:
        super().stop()
        if self._container is not None:
            self._container.close()
            self._container = None

    def due(self, seconds: float, now: float) -> float:
        """Seconds to wait before sending the item at ``seconds`` (pure)."""
        if self._start is None:
            self._start = now - seconds
        delay = self._start + seconds - now
        if delay < -_RESYNC_AFTER:
            self._start = now - seconds
            return 0.0
        return max(delay, 0.0)

    async def _pace(self, seconds: float) -> None:
        delay = self.due(seconds, self._clock())
        if delay > 0:
            await asyncio.sleep(delay)

    def _next(self) -> tuple[Any, float]:
        for _ in range(2):
            item = self._read()
            if item is not None:
                return item
            if not self.loop or self._container is None:
                raise MediaStreamError
            # End of file: start over, one frame after the last one.
            self._container.seek(0)
            self._items = None
            self._offset = self._last + self._interval
            self._first = None
            self.loops += 1
        raise MediaStreamError  # a file without a single frame

    def _read(self) -> tuple[Any, float] | None:
        if self._container is None:
            return None
        if self._items is None:
            if self.passthrough:
                self._items = self._container.demux(self._stream)
            else:
                # Known limit: decoding runs on the event loop (a few ms a frame
                # at 640x480); large files want a thread.
                self._items = self._container.decode(self._stream)
        for item in self._items:
            if item.pts is None or (self.passthrough and not bytes(item)):
                continue  # the demuxer's final empty packet
            time_base = item.time_base or self._stream.time_base
            position = float(item.pts * time_base)
            if self._first is None:
                self._first = position
            seconds = self._offset + position - self._first
            if seconds > self._last:
                self._interval = seconds - self._last
            self._last = max(seconds, self._last)
            return item, seconds
        return None
