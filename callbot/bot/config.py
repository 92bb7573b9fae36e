"""What a bot is told to do: where to call, as whom, and what to publish."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from callbot.bot.sensor_feed import SensorsConfig


class PluginSpec(BaseModel):
    """One plugin the bot runs: its entry-point name and its config."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    config: dict[str, Any] = Field(default_factory=dict)
    essential: bool | None = None  # None: the plugin's own default


class BotConfig(BaseModel):
    """One bot's settings (also the worker's first stdin line, plus ``bot_id``)."""

    server_url: str
    room_id: str
    user_id: str | None = None  # generated if None
    display_name: str | None = None
    token: str | None = None
    duration: float | None = None  # leave after this many seconds
    ice_addresses: list[str] = Field(default_factory=lambda: ["127.0.0.1"])
    video: bool = True
    audio: bool = True
    width: int = 640
    height: int = 480
    fps: int = 30
    # Largest Phoenix frame accepted, in bytes (the real server has no limit);
    # None: no limit.
    max_frame_size: int | None = Field(default=64 * 2**20, ge=1024)
    # "#rrggbb": the published video is this solid colour (composite tests).
    video_colour: str | None = Field(default=None, pattern=r"^#[0-9a-fA-F]{6}$")
    # request_quality_tier crashes the other participants' channels on the
    # real server; only for the reference server's switch.
    allow_quality_tier_requests: bool = False
    plugins: list[PluginSpec] = Field(default_factory=list)
    # Adaptive call behaviour (call-channel.md §5-6).
    audio_file: str | None = None  # WAV/Ogg published (looped) instead of the tone
    audio_file_loop: bool = True
    attention: Literal["high", "medium", "low"] = "high"
    tier_profile: Literal["browser", "server"] = "browser"
    snapshots: bool = True  # send video_snapshot in the viewer tier
    speaking_detector: Literal["vad", "loudness"] = "vad"
    vad_aggressiveness: int = Field(default=3, ge=0, le=3)
    speaking_onset_ms: int = Field(default=100, ge=10, le=5000)
    speaking_release_ms: int = Field(default=500, ge=10, le=10000)
    # Run the detector on received audio too (costs CPU per remote track).
    detect_remote_speaking: bool = False
    # A sensor source, overlays drawn into the video, what is published.
    sensors: SensorsConfig | None = None

    def resolved_user_id(self) -> str:
        return self.user_id or f"bot-{uuid.uuid4().hex[:8]}"
