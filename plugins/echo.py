"""``echo``: the bot sends back what it receives, without decoding (latency checks).

Per kind, the echo follows one remote track (the first one, or the first of
``user_id``) and publishes its encoded frames as the bot's own track. When
that track ends it follows the next one that starts; the output's timestamps
continue across the switch. A keyframe request from the bot's subscribers is
passed on to the followed publisher.
"""

from __future__ import annotations

from typing import Literal

from aiortc import MediaStreamTrack
from pydantic import Field

from callbot.bot.plugin import (
    Plugin,
    PluginConfig,
    PluginContext,
    RemoteTrack,
    RemoteTrackInfo,
)
from callbot.rtc.tap import EncodedFrame, EncodedTrack

Kind = Literal["audio", "video"]
KINDS: tuple[Kind, ...] = ("audio", "video")
_STEP = {"video": 3000, "audio": 960}  # one frame at 30 fps / one 20 ms packet


class EchoConfig(PluginConfig):
    user_id: str | None = Field(
        default=None, description="Whose tracks to echo; default: whoever is first."
    )
    kinds: list[Kind] = Field(default_factory=lambda: list(KINDS))


class EchoTrack(EncodedTrack):
    """The bot's published track, fed with the followed track's frames."""

    @property
    def frames(self) -> int:
        return self.frames_sent


class Retimer:
    """Maps each followed track's RTP timestamps onto one continuous output clock."""

    def __init__(self, step: int) -> None:
        self.step = step
        self._source: str | None = None
        self._offset = 0
        self._last: int | None = None

    def timestamp(self, source: str, timestamp: int) -> int:
        if source != self._source:
            start = 0 if self._last is None else self._last + self.step
            self._offset = start - timestamp
            self._source = source
        self._last = (timestamp + self._offset) & 0xFFFFFFFF
        return self._last


class Echo(Plugin):
    """Publishes the encoded frames of one remote track per kind."""

    name = "echo"
    config_model = EchoConfig

    def __init__(self, config: PluginConfig, context: PluginContext) -> None:
        super().__init__(config, context)
        assert isinstance(config, EchoConfig)
        self.settings = config
        self.outputs: dict[str, EchoTrack] = {}
        self.following: dict[str, RemoteTrack] = {}
        self._retimers = {kind: Retimer(step) for kind, step in _STEP.items()}
        self._waiting_keyframe: dict[str, bool] = {}

    def source(self, kind: str) -> MediaStreamTrack | None:
        if kind not in self.settings.kinds:
            return None
        track = EchoTrack(kind)
        track.on_keyframe_request = lambda: self._keyframe_requested(kind)
        self.outputs[kind] = track
        return track

    def on_track_added(self, track: RemoteTrack) -> None:
        kind = track.kind
        if kind not in self.settings.kinds or kind in self.following:
            return
        wanted = self.settings.user_id
        if wanted is not None and track.info.user_id != wanted:
            return
        self.following[kind] = track
        self._waiting_keyframe[kind] = kind == "video"
        track.on_encoded(lambda frame: self._forward(track, frame), owner=self.name)
        track.request_keyframe()
        self.context.log.info(
            "echoing %s track %s of %s", kind, track.track_id, track.info.user_id
        )

    def on_track_ended(self, track: RemoteTrackInfo) -> None:
        followed = self.following.get(track.kind)
        if followed is not None and followed.track_id == track.track_id:
            del self.following[track.kind]

    def _forward(self, track: RemoteTrack, frame: EncodedFrame) -> None:
        kind = track.kind
        if self.following.get(kind) is not track:
            return
        output = self.outputs.get(kind)
        if output is None or output.readyState != "live":
            return
        if self._waiting_keyframe.get(kind):
            if not frame.keyframe:
                return
            self._waiting_keyframe[kind] = False
        timestamp = self._retimers[kind].timestamp(track.track_id, frame.timestamp)
        output.push(
            EncodedFrame(
                kind, frame.data, timestamp, frame.keyframe, frame.width, frame.height
            )
        )

    def _keyframe_requested(self, kind: str) -> None:
        followed = self.following.get(kind)
        if followed is not None:
            followed.request_keyframe()
