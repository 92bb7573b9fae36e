"""Settings of the reference call server: rooms, ICE, limits and sharp edges."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class RoomConfig(BaseModel):
    """A room of the in-memory RoomStore.

    A public room admits anyone; a private one only its owner and members.
    """

    name: str
    public: bool = True
    owner: str | None = None
    members: list[str] = Field(default_factory=list)


class ServerSettings(BaseModel):
    """Everything a :class:`~callbot.server.app.ReferenceServer` is built from."""

    host: str = "127.0.0.1"
    port: int = 4000
    rooms: list[RoomConfig] = Field(default_factory=list)
    # The join reply's list. Empty by default: never a public STUN host.
    ice_servers: list[dict[str, Any]] = Field(default_factory=list)
    ice_addresses: list[str] = Field(default_factory=lambda: ["127.0.0.1"])
    admin_port: int | None = None
    # False: every call starts as after the server API's
    # set_adaptive_quality(room, false): each participant is active, and each
    # join is followed by adaptive_quality_changed {enabled: false} to the call.
    adaptive_quality: bool = True

    # The real server's sharp edges; each defaults to the real behaviour.
    duplicate_pushes: bool = True
    strict_join_ref: bool = True
    crash_on_bad_event: bool = True
    quality_tier_request_crashes: bool = True
    integer_foundations_only: bool = True

    # Sensor streams: DELTA_ENCODING_ENABLED (default off), the dev config's
    # allow_missing_token, and Phoenix.Token's max_age for viewer tokens.
    delta_encoding: bool = False
    allow_missing_token: bool = True
    viewer_token_max_age_s: int = 3600

    channel_join_limit: int = 20
    call_limit: int = 100

    # Phoenix and CallServer timings, in milliseconds.
    idle_timeout_ms: int = 60_000
    tier_interval_ms: int = 5_000
    recent_window_ms: int = 30_000
    inactivity_timeout_ms: int = 1_800_000
