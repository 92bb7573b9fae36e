"""Settings of the control plane, from ``CALLBOT_*`` environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ControlPlaneSettings(BaseSettings):
    """What ``callbot serve`` runs with; command-line options override these."""

    model_config = SettingsConfigDict(env_prefix="CALLBOT_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    max_bots: int = Field(default=50, ge=1)
    leave_timeout: float = Field(default=10.0, gt=0)
    # The addresses the bots' ICE may use (a JSON list in the environment).
    ice_addresses: list[str] = Field(default_factory=lambda: ["127.0.0.1"])
