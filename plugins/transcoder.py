"""``transcoder``: a live composite of the call as H.264 + AAC MP4 and HLS.

Every participant gets a tile (a grid, or the active speaker large): live
video, else their latest snapshot, else a name card, each with a name label
and a speaking indicator; all audio is mixed. The composite is rendered and
encoded in a worker thread, paced to real time, and written while the call
runs: HLS segments as they complete, the MP4 finalised (fast start) when the
bot leaves. ``callbot transcode MANIFEST OUT.mp4`` makes the same composite
from a recorder's manifest.

``tile_overlays`` maps sensors to participants: each listed participant's
tile carries sensor widgets (badge, waveform, sparkline, label), fed with the
measurements of the bot's own sensor feed through ``on_measurements``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from av.audio.frame import AudioFrame
from av.frame import Frame
from av.video.frame import VideoFrame
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from callbot.bot.plugin import (
    Plugin,
    PluginConfig,
    PluginContext,
    RemoteTrack,
    RemoteTrackInfo,
    WritePath,
)
from callbot.sensors.measurements import Measurement
from media.compositor import TileOverlay
from media.live_composite import LiveComposite
from media.overlays.config import OverlayConfig
from media.overlays.tile import TileSensorOverlay, tile_vitals
from media.sinks.composite_output import PLAYLIST_NAME, EncodingSettings

logger = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
MP4_NAME = "composite.mp4"
HLS_DIRECTORY = "hls"


class TileOverlaySpec(BaseModel):
    """Sensor widgets on one participant's tile: the sensor → participant map.

    ``overlay`` positions its widgets in the tile's pixels; a widget without
    a ``sensor_id`` shows ``sensor_id``. Without ``overlay``, the tile shows
    :func:`media.overlays.tile.tile_vitals` of ``sensor_id``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    user_id: str
    sensor_id: str
    overlay: OverlayConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _widgets_show_the_sensor(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        overlay, sensor_id = data.get("overlay"), data.get("sensor_id")
        if not isinstance(overlay, dict) or not isinstance(sensor_id, str):
            return data
        widgets = overlay.get("widgets")
        if not isinstance(widgets, list):
            return data
        filled = [
            {**w, "sensor_id": sensor_id}
            if isinstance(w, dict) and w.get("kind") != "label" and "sensor_id" not in w
            else w
            for w in widgets
        ]
        return {**data, "overlay": {**overlay, "widgets": filled}}

    def overlay_config(self) -> OverlayConfig:
        return self.overlay if self.overlay is not None else tile_vitals(self.sensor_id)


class TranscoderConfig(PluginConfig):
    directory: WritePath = Field(
        default="transcodes",
        description="Where composites go; each gets a subdirectory.",
    )
    width: int = Field(default=1280, ge=64, le=3840, multiple_of=2)
    height: int = Field(default=720, ge=64, le=2160, multiple_of=2)
    fps: int = Field(default=15, ge=1, le=60)
    layout: Literal["grid", "speaker"] = "grid"
    hls: bool = True
    segment_seconds: float = Field(default=2.0, ge=0.5, le=30.0)
    preset: str = Field(default="veryfast", description="libx264 preset")
    video_bitrate: int = Field(default=2_000_000, ge=100_000)
    stall_seconds: float = Field(
        default=1.0,
        gt=0,
        description="Video older than this counts as stalled: the snapshot shows.",
    )
    tile_overlays: list[TileOverlaySpec] = Field(
        default_factory=list,
        description="Sensor widgets per participant's tile, fed by the bot's "
        "sensor feed (BotConfig.sensors).",
    )

    @field_validator("tile_overlays")
    @classmethod
    def _one_overlay_per_participant(
        cls, specs: list[TileOverlaySpec]
    ) -> list[TileOverlaySpec]:
        users = [spec.user_id for spec in specs]
        doubled = sorted({u for u in users if users.count(u) > 1})
        if doubled:
            raise ValueError(
                f"more than one tile overlay for {', '.join(doubled)}: "
                "list all of a participant's widgets in one overlay"
            )
        return specs

    def encoding(self) -> EncodingSettings:
        return EncodingSettings(
            width=self.width,
            height=self.height,
            fps=self.fps,
            video_bitrate=self.video_bitrate,
            preset=self.preset,
            segment_seconds=self.segment_seconds,
        )


def _safe(text: str) -> str:
    return _UNSAFE.sub("_", text)[:60] or "_"


class Transcoder(Plugin):
    """Composites every remote participant of the call while it runs."""

    name = "transcoder"
    config_model = TranscoderConfig

    def __init__(self, config: PluginConfig, context: PluginContext) -> None:
        super().__init__(config, context)
        assert isinstance(config, TranscoderConfig)
        self.settings = config
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(context.clock()))
        self.directory = (
            Path(config.directory)
            / f"{_safe(context.room_id)}-{stamp}-{_safe(context.bot_id)}"
        )
        self.mp4_path = self.directory / MP4_NAME
        self.hls_dir = self.directory / HLS_DIRECTORY if config.hls else None
        self.sensor_overlays = {
            spec.user_id: TileSensorOverlay(spec.overlay_config())
            for spec in config.tile_overlays
        }
        self.composite = LiveComposite(
            config.encoding(),
            self.mp4_path,
            hls_dir=self.hls_dir,
            layout=config.layout,
            stall_after=config.stall_seconds,
            tile_overlays=self.sensor_overlays,
        )
        self._started = False

    def set_tile_overlay(self, user_id: str, overlay: TileOverlay | None) -> None:
        """Draw ``overlay`` (BGR, in place) onto ``user_id``'s tile."""
        self.composite.set_tile_overlay(user_id, overlay)

    # ------------------------------------------------------------ hooks

    def on_joined(self, endpoint_id: str) -> None:
        if self._started:
            return
        self._started = True
        self.directory.mkdir(parents=True, exist_ok=True)
        # The composite's time zero, on the measurements' (wall) clock.
        epoch = self.context.clock()
        for overlay in self.sensor_overlays.values():
            overlay.epoch = epoch
        self.composite.start()
        self.context.log.info(
            "transcoding the call to %s (%dx%d, %d fps%s)",
            self.mp4_path,
            self.settings.width,
            self.settings.height,
            self.settings.fps,
            ", HLS" if self.hls_dir else "",
        )

    def on_participant_joined(
        self, user_id: str, endpoint_id: str, display_name: str | None
    ) -> None:
        self.composite.participant_joined(user_id, display_name)

    def on_participant_left(self, user_id: str, crashed: bool) -> None:
        self.composite.participant_left(user_id)

    def on_track_added(self, track: RemoteTrack) -> None:
        user_id = track.info.user_id or track.track_id
        composite = self.composite
        if track.kind == "video":

            def on_video(frame: Frame) -> None:
                if isinstance(frame, VideoFrame):
                    composite.video_frame(user_id, frame)

            track.on_decoded(on_video, owner=self.name)
            track.request_keyframe()
        else:

            def on_audio(frame: Frame) -> None:
                if isinstance(frame, AudioFrame):
                    composite.audio_frame(user_id, frame)

            track.on_decoded(on_audio, owner=self.name)
        composite.participant_joined(user_id, None)

    def on_track_ended(self, track: RemoteTrackInfo) -> None:
        if track.kind == "video":
            self.composite.video_ended(track.user_id or track.track_id)

    def on_snapshot(
        self, user_id: str, jpeg: bytes, width: int, height: int, timestamp: float
    ) -> None:
        self.composite.snapshot(user_id, jpeg)

    def on_speaking(self, user_id: str, speaking: bool) -> None:
        self.composite.speaking(user_id, speaking)

    def on_measurements(self, measurements: Sequence[Measurement]) -> None:
        for overlay in self.sensor_overlays.values():
            overlay.feed(measurements)

    async def on_leaving(self) -> None:
        if not self._started:
            return
        # Finalising flushes the encoder and rewrites the MP4: off the loop.
        # Known limit: the fast-start rewrite of a long call's MP4 can outlast
        # the bot's 5 s bound for on_leaving (the rewrite then ends after "left").
        stats = await asyncio.to_thread(self.composite.stop)
        error = self.composite.error
        self.context.log.info(
            "composite finished: %.2f s, %d frames, %d dropped, real-time factor %.2f",
            stats.duration,
            stats.frames,
            stats.dropped,
            stats.real_time_factor,
        )
        self.context.report(
            {
                "type": "event",
                "event": "transcoded",
                "mp4": str(self.mp4_path),
                "hls": str(self.hls_dir / PLAYLIST_NAME) if self.hls_dir else None,
                "duration": round(stats.duration, 3),
                "frames": stats.frames,
                "dropped": stats.dropped,
                "real_time_factor": round(stats.real_time_factor, 3),
                "cpu_seconds": round(stats.cpu, 3),
                "error": repr(error) if error is not None else None,
                "ts": self.context.clock(),
            }
        )
        if error is not None:
            # Reported as this plugin's failure too, with its name.
            raise RuntimeError(f"the composite stopped early: {error!r}") from error


class TranscodeCommand:
    """``callbot transcode MANIFEST OUT.mp4``: a recording's composite."""

    name = "transcode"
    help = "composite a recording (its manifest.json) into an H.264 + AAC MP4"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("manifest", type=Path, help="the recording's manifest.json")
        parser.add_argument("output", type=Path, help="the MP4 to write")
        parser.add_argument(
            "--width", type=int, default=1280, help="composite width in pixels"
        )
        parser.add_argument(
            "--height", type=int, default=720, help="composite height in pixels"
        )
        parser.add_argument("--fps", type=int, default=15, help="composite frame rate")
        parser.add_argument(
            "--layout",
            choices=("grid", "speaker"),
            default="grid",
            help="every participant in a grid, or the speaker large",
        )
        parser.add_argument(
            "--hls",
            type=Path,
            default=None,
            metavar="DIR",
            help="also write an HLS playlist and segments into DIR",
        )
        parser.add_argument("--preset", default="veryfast", help="libx264 preset")

    def run(self, args: argparse.Namespace) -> int:
        from media.offline_composite import transcode_recording

        settings = EncodingSettings(
            width=args.width & ~1,
            height=args.height & ~1,
            fps=args.fps,
            preset=args.preset,
        )
        result = transcode_recording(
            args.manifest,
            args.output,
            settings,
            hls_dir=args.hls,
            layout=args.layout,
        )
        logger.info(
            "%s: %.2f s, %d frames, %d participants, in %.1f s",
            args.output,
            result.duration,
            result.frames,
            result.participants,
            result.seconds,
        )
        print(args.output, flush=True)
        return 0


transcode_command = TranscodeCommand()
