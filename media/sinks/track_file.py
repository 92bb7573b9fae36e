"""One received track written to a file as it arrives, without transcoding.

VP8 goes into WebM, Opus into WebM or Ogg, straight from the depacketized RTP
payloads. Clusters (WebM) and pages (Ogg) are closed at least every
``flush_interval`` seconds and written through at once, so a file cut short
by a killed process still opens and holds the media up to about that long
before the end.
"""

from __future__ import annotations

import fractions
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av

from callbot.rtc.tap import AUDIO_CLOCK_RATE, VIDEO_CLOCK_RATE, EncodedFrame
from media.sinks.opus import opus_packet_samples
from media.sinks.timeline import RtpTimeline

logger = logging.getLogger(__name__)

_MS = fractions.Fraction(1, 1000)
_DEFAULT_FRAME_MS = 33


@dataclass
class SizeChange:
    """A video keyframe with a new size, at ``position`` ms into the file."""

    position: int
    width: int
    height: int


@dataclass
class TrackFileInfo:
    """What was written, for the recording's manifest."""

    path: Path
    kind: str
    codec: str
    first_arrival: float | None = None
    """``now`` of the first frame written (the recorder's clock)."""
    frames: int = 0
    keyframes: int = 0
    bytes: int = 0
    dropped_before_keyframe: int = 0
    duration: float = 0.0
    sizes: list[SizeChange] = field(default_factory=list)
    closed: bool = False


class TrackFile:
    """Writes one track's encoded frames to ``path`` (WebM or Ogg).

    Video starts at the first keyframe (its size goes into the header); the
    frames before it are dropped. Each packet is held until the next one
    arrives, so that its duration is known.
    """

    def __init__(
        self,
        path: Path,
        kind: str,
        *,
        container: str = "webm",
        flush_interval: float = 0.5,
    ) -> None:
        if kind not in ("audio", "video"):
            raise ValueError(f"unknown track kind {kind!r}")
        if kind == "video" and container != "webm":
            raise ValueError("video is written to WebM only")
        if container not in ("webm", "ogg"):
            raise ValueError(f"unknown container {container!r}")
        self.kind = kind
        self.container_format = container
        self.flush_interval = flush_interval
        clock_rate = VIDEO_CLOCK_RATE if kind == "video" else AUDIO_CLOCK_RATE
        self.timeline = RtpTimeline(clock_rate)
        self.info = TrackFileInfo(path, kind, "vp8" if kind == "video" else "opus")
        self._container: Any = None
        self._stream: Any = None
        self._pending: tuple[bytes, int, bool] | None = None  # data, ms, keyframe
        self._last_end = 0
        self._last_interval = _DEFAULT_FRAME_MS
        self._size: tuple[int, int] | None = None

    @property
    def path(self) -> Path:
        return self.info.path

    @property
    def closed(self) -> bool:
        return self.info.closed

    def write(self, frame: EncodedFrame, now: float) -> bool:
        """Add one frame received at ``now``; False if it was not written."""
        if self.info.closed:
            return False
        if self._container is None:
            if self.kind == "video" and not (frame.keyframe and frame.width):
                self.info.dropped_before_keyframe += 1
                return False
            self._open(frame)
            self.info.first_arrival = now

        position = self.timeline.position(frame.timestamp, now)
        if self.kind == "video" and frame.keyframe and frame.width and frame.height:
            size = (frame.width, frame.height)
            if size != self._size:
                self._size = size
                self.info.sizes.append(SizeChange(position, *size))
        self._flush_pending(next_position=position)
        self._pending = (frame.data, position, frame.keyframe)
        self.info.frames += 1
        self.info.keyframes += int(frame.keyframe and self.kind == "video")
        self.info.bytes += len(frame.data)
        return True

    def close(self) -> TrackFileInfo:
        """Write the last frame and the trailer (duration, cues); idempotent."""
        if self.info.closed:
            return self.info
        self.info.closed = True
        if self._container is not None:
            self._flush_pending(next_position=None)
            self._container.close()
            self._container = None
            self.info.duration = self._last_end / 1000
        logger.debug("closed %s (%.2f s)", self.info.path, self.info.duration)
        return self.info

    def _open(self, first: EncodedFrame) -> None:
        self.info.path.parent.mkdir(parents=True, exist_ok=True)
        options = {"flush_packets": "1"}
        if self.container_format == "webm":
            options["cluster_time_limit"] = str(int(self.flush_interval * 1000))
        else:
            options["page_duration"] = str(int(self.flush_interval * 1_000_000))
        container = av.open(
            str(self.info.path), "w", format=self.container_format, options=options
        )
        stream: Any
        if self.kind == "video":
            # The encoder is never fed: the stream only describes VP8 to the
            # muxer, which needs the size before the header.
            assert first.width is not None and first.height is not None
            stream = container.add_stream("libvpx", rate=30)
            stream.width = first.width
            stream.height = first.height
            stream.pix_fmt = "yuv420p"
        else:
            # Opened only so that it produces the OpusHead header.
            stream = container.add_stream("libopus", rate=AUDIO_CLOCK_RATE)
            stream.layout = "stereo"
        stream.time_base = _MS
        container.start_encoding()
        self._container, self._stream = container, stream

    def _flush_pending(self, next_position: int | None) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            return
        data, position, keyframe = pending
        if self.kind == "audio":
            duration = opus_packet_samples(data) * 1000 // AUDIO_CLOCK_RATE or 20
            if next_position is not None:
                duration = min(duration, next_position - position)
        elif next_position is not None:
            duration = self._last_interval = next_position - position
        else:
            duration = self._last_interval
        duration = max(duration, 1)
        packet = av.Packet(data)
        packet.pts = packet.dts = position
        packet.duration = duration
        packet.time_base = _MS
        packet.stream = self._stream
        packet.is_keyframe = keyframe
        # Muxing rescales the packet in place, so the end is taken before.
        self._last_end = position + duration
        self._container.mux(packet)
