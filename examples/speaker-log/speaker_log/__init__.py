"""A callbot plugin: a JSON-lines log of who speaks and which tracks come and go."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, TextIO

from pydantic import Field

from callbot.bot.plugin import (
    HostPath,
    Plugin,
    PluginConfig,
    PluginContext,
    RemoteTrack,
    RemoteTrackInfo,
)
from callbot.rtc.tap import EncodedFrame


class SpeakerLogConfig(PluginConfig):
    path: Annotated[Path, HostPath("write")] = Field(
        description="The JSON-lines file to write."
    )


class SpeakerLog(Plugin):
    """Writes one line per event; counts each remote track's encoded frames."""

    name = "speaker-log"
    config_model = SpeakerLogConfig

    def __init__(self, config: PluginConfig, context: PluginContext) -> None:
        super().__init__(config, context)
        assert isinstance(config, SpeakerLogConfig)
        self.frames: dict[str, int] = {}
        config.path.parent.mkdir(parents=True, exist_ok=True)
        self.file: TextIO = config.path.open("a", encoding="utf-8")

    def on_joined(self, endpoint_id: str) -> None:
        # Called again with a new endpoint after the bot recovered a call.
        self.write("joined", endpoint_id=endpoint_id)

    def on_participant_joined(
        self, user_id: str, endpoint_id: str, display_name: str | None
    ) -> None:
        self.write("participant_joined", user_id=user_id, name=display_name)

    def on_speaking(self, user_id: str, speaking: bool) -> None:
        self.write("speaking", user_id=user_id, speaking=speaking)

    def on_track_added(self, track: RemoteTrack) -> None:
        self.frames[track.track_id] = 0

        # Frame callbacks run on the hot path: count, nothing more.
        def count(frame: EncodedFrame) -> None:
            self.frames[track.track_id] += 1

        track.on_encoded(count, owner=self.name)
        self.write("track_added", user_id=track.info.user_id, kind=track.kind)

    def on_track_ended(self, track: RemoteTrackInfo) -> None:
        frames = self.frames.pop(track.track_id, 0)
        self.write("track_ended", user_id=track.user_id, kind=track.kind, frames=frames)

    def on_leaving(self) -> None:
        for track_id, frames in self.frames.items():
            self.write("track_open_at_leave", track_id=track_id, frames=frames)
        self.write("left")
        self.file.close()

    def write(self, event: str, **fields: Any) -> None:
        line = {"ts": round(self.context.clock(), 3), "event": event, **fields}
        self.file.write(json.dumps(line) + "\n")
        self.file.flush()
