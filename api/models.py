"""REST bodies of the control plane: requests, bot views and errors."""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.hostpaths import confine_specs, files_root
from callbot.bot.config import PluginSpec
from callbot.bot.plugin import PluginError
from callbot.bot.sensor_feed import SensorsConfig

BotStatus = Literal["starting", "connecting", "in_call", "leaving", "left", "failed"]
"""The lifecycle of a bot: starting → connecting → in_call → leaving → left."""

TERMINAL_STATUSES: frozenset[str] = frozenset({"left", "failed"})

# The clips a bot can publish by name (package data of media/).
AUDIO_CLIPS: dict[str, Path] = {
    "speech": Path(str(importlib.resources.files("media") / "data" / "speech.wav")),
}

AttentionLevel = Literal["high", "medium", "low"]
"""How closely the viewers watch the bot (Sensocto's attention level)."""

Tier = Literal["active", "recent", "viewer", "idle"]
"""The bot's video tier: how much video it sends, by its speaking and attention."""


class CreateBot(BaseModel):
    """The body of ``POST /bots``: which call the new bot joins, and as whom."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "server_url": "ws://127.0.0.1:4000/socket",
                    "room_id": "lobby",
                    "user_id": "bot-1",
                    "display_name": "Bot 1",
                },
                {
                    "server_url": "ws://127.0.0.1:4000/socket",
                    "room_id": "lobby",
                    "user_id": "bot-2",
                    "audio_clip": "speech",
                    "attention": "medium",
                    "tier_profile": "server",
                    "allow_quality_tier_requests": False,
                    "snapshots": True,
                    "sensors": {
                        "source": {
                            "kind": "viewer",
                            "viewer_token": "<a viewer token>",
                            "sensor_ids": ["hr-1"],
                        },
                        "overlay": {
                            "widgets": [
                                {
                                    "kind": "badge",
                                    "sensor_id": "hr-1",
                                    "attribute_id": "heartrate",
                                }
                            ]
                        },
                    },
                },
            ]
        },
    )

    server_url: str = Field(
        description="The Sensocto socket URL, ws:// or wss://.",
        min_length=1,
        max_length=2048,
    )
    room_id: str = Field(min_length=1, max_length=200)
    user_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="The participant identity; generated when absent.",
    )
    display_name: str | None = Field(default=None, min_length=1, max_length=200)
    webhook_url: str | None = Field(
        default=None,
        max_length=2048,
        description="Where this bot's events are also sent, http:// or https://.",
    )
    max_duration: float | None = Field(
        default=None, gt=0, le=7 * 86400, description="Leave after this many s."
    )
    alone_timeout: float | None = Field(
        default=None,
        gt=0,
        le=86400,
        description="Leave after this many s alone in the call, once someone came.",
    )
    nobody_joined_timeout: float | None = Field(
        default=None,
        gt=0,
        le=86400,
        description="Leave if nobody else is in the call this many s after joining.",
    )
    plugins: list[PluginSpec] = Field(
        default_factory=list,
        max_length=20,
        description=(
            'Plugins the bot runs, e.g. [{"name": "recorder", "config": {}}];'
            " an unknown name or a config the plugin refuses is a 422. Paths in"
            " a config are relative to the files root (CALLBOT_FILES_DIR) and"
            " must stay in it."
        ),
    )

    attention: AttentionLevel | None = Field(
        default=None,
        description=(
            "The attention level the bot starts with (the bot's default: high);"
            " change it later with POST /bots/{id}/attention."
        ),
    )
    tier_profile: Literal["browser", "server"] | None = Field(
        default=None,
        description=(
            "How the bot's video follows its tier: `browser` (as Sensocto's"
            " web client) or `server` (the server's quality ceilings)."
        ),
    )
    allow_quality_tier_requests: bool | None = Field(
        default=None,
        description=(
            "Let the bot send request_quality_tier (only safe on the reference"
            " server; off by default)."
        ),
    )
    snapshots: bool | None = Field(
        default=None,
        description="Send JPEG snapshots while in the viewer tier (default: on).",
    )
    audio_clip: Literal["speech"] | None = Field(
        default=None,
        description=(
            "Publish a built-in clip, played once, instead of the tone:"
            " `speech` is a spoken sentence (about 3.5 s), so the bot is seen"
            " speaking and its tier goes active, then recent."
        ),
    )
    sensors: SensorsConfig | None = Field(
        default=None,
        description=(
            "A sensor source (local, viewer with a viewer token, or room), the"
            " overlays drawn into the bot's video and what it publishes."
            " sensors.server_url must name an allowed host, like server_url."
        ),
    )

    @field_validator("sensors")
    @classmethod
    def _sensor_socket(cls, value: SensorsConfig | None) -> SensorsConfig | None:
        # A replay file is read on the control plane's host: over the API that
        # would let a key holder make a bot read any file, so it is refused
        # here (`callbot run --sensors` takes it).
        if value is not None and value.source.replay_path is not None:
            raise ValueError(
                "sensors.source.replay_path is not accepted over the API;"
                " use callbot run --sensors for file replays"
            )
        if value is not None and value.server_url is not None:
            parts = urlsplit(value.server_url)
            if parts.scheme not in ("ws", "wss") or not parts.hostname:
                raise ValueError("sensors.server_url must be a ws:// or wss:// URL")
            _check_authority("sensors.server_url", value.server_url)
        return value

    def adaptive_options(self) -> dict[str, Any]:
        """The adaptive settings given, as fields of the worker's config."""
        options: dict[str, Any] = {}
        for name in (
            "attention",
            "tier_profile",
            "allow_quality_tier_requests",
            "snapshots",
        ):
            value = getattr(self, name)
            if value is not None:
                options[name] = value
        if self.audio_clip is not None:
            options["audio_file"] = str(AUDIO_CLIPS[self.audio_clip])
            options["audio_file_loop"] = False
        if self.sensors is not None:
            options["sensors"] = self.sensors.model_dump(
                mode="json", exclude_unset=True
            )
        return options

    @field_validator("plugins")
    @classmethod
    def _known_plugins(cls, value: list[PluginSpec]) -> list[PluginSpec]:
        # Paths the plugins mark as host paths are confined to the files root
        # (and rewritten to it) before the configs are checked, so a plugin's
        # own checks (a file that must exist) look inside the root.
        try:
            if value:
                value = confine_specs(value, files_root())
        except PluginError as exc:
            raise ValueError(str(exc)) from exc
        return value

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("webhook_url must be an http:// or https:// URL")
        _check_authority("webhook_url", value)
        return value

    @field_validator("server_url")
    @classmethod
    def _websocket_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("ws", "wss"):
            raise ValueError("server_url must be a ws:// or wss:// URL")
        if not parts.hostname:
            raise ValueError("server_url has no host")
        _check_authority("server_url", value)
        return value


def _check_authority(name: str, url: str) -> None:
    """Refuse a port out of 1..65535 and credentials in the URL."""
    parts = urlsplit(url)
    # Credentials belong in the bot's token, never in a URL that is logged
    # and stored.
    if "@" in parts.netloc:
        raise ValueError(f"{name} must not carry a user name or password")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{name} has an invalid port") from None
    if port == 0:
        raise ValueError(f"{name} has an invalid port")


class AttentionChange(BaseModel):
    """The body of ``POST /bots/{id}/attention``."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"level": "low"}]}
    )

    level: AttentionLevel


class BotCreated(BaseModel):
    """The answer to ``POST /bots``."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"id": "b-3f2a9c1d", "status": "starting"}]}
    )

    id: str
    status: BotStatus


class Track(BaseModel):
    """The counters of one track a bot sends or receives."""

    direction: Literal["inbound", "outbound"]
    kind: Literal["audio", "video"]
    track_id: str | None = None
    from_user_id: str | None = None
    endpoint_id: str | None = None
    frames: int = 0
    packets: int = 0
    bytes: int = 0
    width: int | None = None
    height: int | None = None
    seconds: float | None = None
    ended: bool = False


class BotError(BaseModel):
    """Why a bot failed: a stable code and a message for people."""

    code: str = Field(description="heartbeat_lost, worker_exited, call_full, ...")
    message: str


class StatusChange(BaseModel):
    """One step of a bot's status history."""

    status: BotStatus
    code: str | None = None
    message: str | None = None
    ts: float


class CallEvent(BaseModel):
    """Something the bot saw happen in its call, in short."""

    event: str = Field(
        description=(
            "participant_joined, participant_left, self_joined / self_left (the"
            " bot's own join and leave as the server echoes them), speaking (the"
            " bot), voice_activity (another participant), video_settings (the"
            " bot's tier changed), ..."
        )
    )
    user_id: str | None = Field(
        default=None, description="Whom it is about; the bot's own user for its own."
    )
    speaking: bool | None = Field(
        default=None, description="speaking, voice_activity: speaking now or not."
    )
    tier: Tier | None = Field(
        default=None, description="video_settings, tier_changed: the new tier."
    )
    fps: int | None = Field(
        default=None, description="video_settings: frames a second now sent."
    )
    crashed: bool | None = Field(
        default=None, description="participant_left: its endpoint crashed."
    )
    track_id: str | None = Field(
        default=None, description="track_ended, voice_activity: which track."
    )
    ts: float


_BOT_EXAMPLE: dict[str, Any] = {
    "id": "b-3f2a9c1d",
    "status": "in_call",
    "reason": None,
    "server_url": "ws://127.0.0.1:4000/socket",
    "room_id": "lobby",
    "user_id": "bot-1",
    "display_name": "Bot 1",
    "endpoint_id": "bot-1_12",
    "participants": ["bot-2"],
    "tracks": [
        {
            "direction": "outbound",
            "kind": "video",
            "track_id": "7c1e",
            "frames": 300,
            "packets": 900,
            "bytes": 1234567,
        },
        {
            "direction": "inbound",
            "kind": "video",
            "track_id": "9a0b",
            "from_user_id": "bot-2",
            "endpoint_id": "bot-2_13",
            "frames": 290,
            "packets": 870,
            "bytes": 1200000,
            "width": 640,
            "height": 480,
        },
        {
            "direction": "inbound",
            "kind": "audio",
            "from_user_id": "bot-2",
            "frames": 490,
            "packets": 490,
            "bytes": 50000,
            "seconds": 9.8,
        },
    ],
    "events": [{"event": "participant_joined", "user_id": "bot-2", "ts": 1764840000.4}],
    "tier": "active",
    "speaking": True,
    "attention": "high",
    "snapshots_sent": 0,
    "snapshots_received": {"bot-2": 12},
    "exit_code": None,
    "pid": 4242,
    "created_at": 1764840000.0,
    "updated_at": 1764840010.0,
}


class Bot(BaseModel):
    """What the control plane knows about one bot."""

    model_config = ConfigDict(json_schema_extra={"examples": [_BOT_EXAMPLE]})

    id: str
    status: BotStatus
    reason: str | None = Field(
        default=None, description="Why the bot failed or left, when known."
    )
    error: BotError | None = Field(default=None, description="Set when failed.")
    webhook_url: str | None = None
    server_url: str
    room_id: str
    user_id: str
    display_name: str | None = None
    endpoint_id: str | None = None
    participants: list[str] = Field(
        default_factory=list, description="Other users in the call, as last seen."
    )
    tracks: list[Track] = Field(default_factory=list)
    events: list[CallEvent] = Field(default_factory=list)
    history: list[StatusChange] = Field(
        default_factory=list, description="Every status the bot went through."
    )
    tier: Tier | None = Field(
        default=None, description="The bot's video tier, as last reported."
    )
    speaking: bool | None = Field(
        default=None, description="Whether the bot is speaking, as last reported."
    )
    attention: AttentionLevel | None = Field(
        default=None, description="The bot's attention level, as last reported."
    )
    snapshots_sent: int = Field(
        default=0, description="Video snapshots the bot sent (in the viewer tier)."
    )
    snapshots_received: dict[str, int] = Field(
        default_factory=dict, description="Snapshots received, per user id."
    )
    exit_code: int | None = Field(
        default=None,
        description="The worker's exit code; negative: killed by that signal.",
    )
    pid: int | None = Field(
        default=None,
        description="The process id of the bot's worker (or Ray actor, on its node).",
    )
    node: str | None = Field(
        default=None,
        description="The Ray node id the bot's actor runs on (launcher ray).",
    )
    created_at: float
    updated_at: float


class BotList(BaseModel):
    """The answer to ``GET /bots``."""

    bots: list[Bot]


class ErrorDetail(BaseModel):
    """One error: a stable code, a message for people, and whether to retry."""

    code: str
    message: str
    retryable: bool
    request_id: str | None = Field(
        default=None, description="The X-Request-ID of the request, for support."
    )


class ErrorBody(BaseModel):
    """Every error response of the control plane."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": {
                        "code": "bot_not_found",
                        "message": "no bot with id b-0000",
                        "retryable": False,
                    }
                }
            ]
        }
    )

    error: ErrorDetail


class Health(BaseModel):
    """The answer of the health probes."""

    status: Literal["live", "ready"]


class Event(BaseModel):
    """One event of a bot; ``seq`` orders all events, ``event_id`` never changes."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "event_id": "5b0e8a4e-3f0c-4c1e-9a53-1f2f0f6c2d11",
                    "seq": 42,
                    "bot_id": "b-3f2a9c1d",
                    "type": "status",
                    "data": {"status": "in_call", "previous": "connecting"},
                    "ts": 1764840001.2,
                }
            ]
        }
    )

    event_id: str
    seq: int
    bot_id: str
    type: str = Field(
        description=(
            "status, joined, participant_joined, participant_left, self_joined /"
            " self_left (the bot's own join and leave as the server echoes them),"
            " speaking, video_settings (a tier change), voice_activity, ..."
        )
    )
    data: dict[str, Any]
    ts: float


class EventPage(BaseModel):
    """A page of events; ask again with ``after=next_after`` for more."""

    events: list[Event]
    next_after: int | None = Field(
        default=None, description="Pass as ?after= for the next page; null at the end."
    )


class WebhookDelivery(BaseModel):
    """One webhook delivery of one event, with its attempts so far."""

    event_id: str
    event_type: str
    url: str
    attempts: int
    delivered: bool
    done: bool
    last_status: int | None = None
    last_error: str | None = None
    next_attempt_at: float | None = None
    updated_at: float


class DeliveryLog(BaseModel):
    """The answer to ``GET /bots/{id}/webhooks``."""

    deliveries: list[WebhookDelivery]


class LogLines(BaseModel):
    """The last lines a bot's worker logged."""

    bot_id: str
    lines: list[str]
