"""``recorder``: every remote track to a file, without decoding or encoding.

Each remote track goes to its own file as it arrives (VP8 → WebM, Opus →
WebM or Ogg, see :mod:`media.sinks.track_file`), next to a ``manifest.json``
with participants, track start offsets, tier changes, speaking intervals and
the snapshots (saved as JPEG files), all on the recorder's wall clock.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Literal

from pydantic import Field

from callbot.bot.plugin import (
    Plugin,
    PluginConfig,
    PluginContext,
    RemoteTrack,
    RemoteTrackInfo,
    WritePath,
)
from callbot.rtc.tap import EncodedFrame
from media.sinks.manifest import Manifest, TrackEntry
from media.sinks.track_file import TrackFile

logger = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class RecorderConfig(PluginConfig):
    directory: WritePath = Field(
        default="recordings",
        description="Where recordings go; each gets a subdirectory.",
    )
    audio_container: Literal["webm", "ogg"] = "webm"
    flush_interval: float = Field(
        default=0.5,
        gt=0.05,
        le=2.0,
        description="Seconds of media at most lost if the bot is killed.",
    )
    snapshots: bool = True


def _safe(text: str) -> str:
    return _UNSAFE.sub("_", text)[:60] or "_"


class Recorder(Plugin):
    """Records every remote track of the call; finalises each file as it ends."""

    name = "recorder"
    config_model = RecorderConfig

    def __init__(self, config: PluginConfig, context: PluginContext) -> None:
        super().__init__(config, context)
        assert isinstance(config, RecorderConfig)
        self.settings = config
        started = context.clock()
        stamp = _stamp(started)
        self.directory = (
            Path(config.directory) / f"{_safe(context.room_id)}-{stamp}-"
            f"{_safe(context.bot_id)}"
        )
        self.directory.mkdir(parents=True, exist_ok=True)
        self.manifest = Manifest(context.room_id, context.bot_id, started)
        self._files: dict[str, tuple[TrackFile, TrackEntry]] = {}
        self._write_manifest()
        context.log.info("recording to %s", self.directory)

    # ------------------------------------------------------------ hooks

    def on_participant_joined(
        self, user_id: str, endpoint_id: str, display_name: str | None
    ) -> None:
        entry = self.manifest.participant(user_id)
        entry.endpoint_id = endpoint_id
        entry.display_name = display_name or entry.display_name
        if entry.joined is None:
            entry.joined = self.manifest.offset(self.context.clock())
        entry.left = None
        self._write_manifest()

    def on_participant_left(self, user_id: str, crashed: bool) -> None:
        entry = self.manifest.participant(user_id)
        entry.left = self.manifest.offset(self.context.clock())
        entry.crashed = crashed
        self.manifest.speaking_changed(user_id, False, self.context.clock())
        self._write_manifest()

    def on_track_added(self, track: RemoteTrack) -> None:
        info = track.info
        previous = self._files.get(info.track_id)
        if previous is not None and not previous[0].closed:
            return
        # After the bot rejoined, the same track comes again: a new part.
        part = sum(1 for t in self.manifest.tracks if t.track_id == info.track_id)
        user = _safe(info.user_id or "unknown")
        suffix = "ogg" if info.kind == "audio" and self._audio_ogg else "webm"
        stem = f"{user}-{info.kind}-{_safe(info.track_id)[:12]}"
        name = f"{stem}-{part + 1}.{suffix}" if part else f"{stem}.{suffix}"
        file = TrackFile(
            self.directory / name,
            info.kind,
            container=suffix,
            flush_interval=self.settings.flush_interval,
        )
        entry = TrackEntry(
            info.track_id,
            info.kind,
            info.user_id,
            info.endpoint_id,
            name,
            file.info.codec,
        )
        self._files[info.track_id] = (file, entry)
        self.manifest.tracks.append(entry)
        if info.user_id is not None:
            self.manifest.participant(info.user_id)
        self._write_manifest()

        track.on_encoded(
            lambda frame: self._on_frame(file, entry, frame), owner=self.name
        )
        if info.kind == "video":
            track.request_keyframe()
        self.context.log.info(
            "recording %s track %s to %s", info.kind, info.track_id, name
        )

    def on_track_ended(self, track: RemoteTrackInfo) -> None:
        self._close(track.track_id)

    def on_tier_changed(self, user_id: str, tier: str) -> None:
        at = self.manifest.offset(self.context.clock())
        self.manifest.tiers.append({"user_id": user_id, "tier": tier, "at": at})
        self._write_manifest()

    def on_speaking(self, user_id: str, speaking: bool) -> None:
        if self.manifest.speaking_changed(user_id, speaking, self.context.clock()):
            self._write_manifest()

    def on_snapshot(
        self, user_id: str, jpeg: bytes, width: int, height: int, timestamp: float
    ) -> None:
        if not self.settings.snapshots:
            return
        at = self.manifest.offset(self.context.clock())
        name = f"snapshots/{_safe(user_id)}-{int(at * 1000):08d}.jpg"
        path = self.directory / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(jpeg)
        self.manifest.snapshots.append(
            {
                "user_id": user_id,
                "file": name,
                "at": at,
                "sent_at": timestamp,
                "width": width,
                "height": height,
            }
        )
        self._write_manifest()

    def on_leaving(self) -> None:
        for track_id in list(self._files):
            self._close(track_id)
        now = self.context.clock()
        self.manifest.ended_at = now
        self.manifest.close_open_intervals(now)
        self._write_manifest()
        self.context.log.info("recording finished in %s", self.directory)

    # ------------------------------------------------------------ frames

    @property
    def _audio_ogg(self) -> bool:
        return self.settings.audio_container == "ogg"

    def _on_frame(
        self, file: TrackFile, entry: TrackEntry, frame: EncodedFrame
    ) -> None:
        if file.closed:
            return
        now = self.context.clock()
        if not file.write(frame, now):
            return
        if entry.start is None:
            # Known limit: tracks are aligned by their first frame's arrival
            # (aiortc keeps no RTCP sender reports), within the jitter buffer's
            # delay: about 80 ms for audio, one frame for video.
            entry.start = self.manifest.offset(now)
            self._write_manifest()
        entry.frames = file.info.frames
        if len(file.info.sizes) != len(entry.sizes):
            entry.sizes = [
                {"position_ms": s.position, "width": s.width, "height": s.height}
                for s in file.info.sizes
            ]
            self._write_manifest()

    def _close(self, track_id: str) -> None:
        found = self._files.get(track_id)
        if found is None or found[0].closed:
            return
        file, entry = found
        info = file.close()
        entry.closed = True
        entry.duration = round(info.duration, 3)
        entry.end = self.manifest.offset(self.context.clock())
        entry.frames = info.frames
        entry.keyframes = info.keyframes
        self._write_manifest()
        self.context.log.info(
            "track %s recorded: %d frames, %.2f s", track_id, info.frames, info.duration
        )

    def _write_manifest(self) -> None:
        self.manifest.write(self.directory)


def _stamp(wall: float) -> str:
    import time

    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(wall))
