"""What a bot is told to do: where to call, as whom, and what to publish."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


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
    # request_quality_tier crashes the other participants' channels on the
    # real server; only for the reference server's switch.
    allow_quality_tier_requests: bool = False
    plugins: list[PluginSpec] = Field(default_factory=list)

    def resolved_user_id(self) -> str:
        return self.user_id or f"bot-{uuid.uuid4().hex[:8]}"
