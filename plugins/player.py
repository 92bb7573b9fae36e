"""``player``: the bot publishes a media file (MP4, WebM, WAV, Ogg) in a loop.

Video in real time from :class:`media.sources.file_video.FileVideoTrack`
(VP8 passed through without re-encoding, other codecs decoded and encoded by
aiortc; see that module for the keyframe interval such files need), audio
from :class:`media.sources.file.FileAudioTrack`. A kind the file does not
hold falls back to the bot's own source.
"""

from __future__ import annotations

from pathlib import Path

import av
from aiortc import MediaStreamTrack
from pydantic import Field, field_validator

from callbot.bot.plugin import Plugin, PluginConfig, PluginContext, ReadPath
from media.sources.file import FileAudioTrack, read_audio
from media.sources.file_video import FileVideoTrack


class PlayerConfig(PluginConfig):
    file: ReadPath = Field(description="The media file to publish.")
    loop: bool = True
    video: bool = True
    audio: bool = True

    @field_validator("file")
    @classmethod
    def _readable(cls, value: str) -> str:
        path = Path(value)
        if not path.exists():
            raise ValueError(f"no such file: {value}")
        if not path.is_file():
            raise ValueError(f"not a regular file: {value}")
        return value


class Player(Plugin):
    """Publishes the file's video and audio in place of the bot's own sources."""

    name = "player"
    config_model = PlayerConfig

    def __init__(self, config: PluginConfig, context: PluginContext) -> None:
        super().__init__(config, context)
        assert isinstance(config, PlayerConfig)
        self.settings = config
        with av.open(config.file) as container:
            self.has_video = bool(container.streams.video) and config.video
            self.has_audio = bool(container.streams.audio) and config.audio
        # Decoded once; every new endpoint of the bot reuses the samples.
        self._samples = read_audio(config.file) if self.has_audio else None
        self.tracks: list[MediaStreamTrack] = []

    def source(self, kind: str) -> MediaStreamTrack | None:
        track: MediaStreamTrack
        if kind == "video" and self.has_video:
            track = FileVideoTrack(self.settings.file, loop=self.settings.loop)
        elif kind == "audio" and self._samples is not None:
            track = FileAudioTrack(
                self.settings.file, loop=self.settings.loop, samples=self._samples
            )
        else:
            return None
        self.tracks.append(track)
        self.context.log.info("publishing %s of %s", kind, self.settings.file)
        return track
