"""Settings of the control plane, from ``CALLBOT_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOOPBACK_HOSTS = ["127.0.0.1", "::1", "localhost"]


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "callbot"


class ControlPlaneSettings(BaseSettings):
    """What ``callbot serve`` runs with; command-line options override these."""

    model_config = SettingsConfigDict(env_prefix="CALLBOT_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    max_bots: int = Field(default=50, ge=1)
    # New bots are refused (503) while the 1-minute load per core is above
    # this; off when unset.
    max_load: float | None = Field(default=None, gt=0)
    leave_timeout: float = Field(default=10.0, gt=0)
    # The addresses the bots' ICE may use (a JSON list in the environment).
    ice_addresses: list[str] = Field(default_factory=lambda: ["127.0.0.1"])
    # The bot worker's command line (a JSON list); the real worker when unset.
    worker_command: list[str] | None = None
    # Where the database file (by default) and the bots' directories live.
    data_dir: Path = Field(default_factory=_default_data_dir)
    # The files root: plugin paths given over the REST API (recordings,
    # media to publish) must lie in it; <data_dir>/files when unset.
    files_dir: Path | None = None
    # SQLAlchemy URL; SQLite in data_dir when unset. PostgreSQL:
    # postgresql+psycopg://user@host:port/db
    database_url: str | None = None
    # On SIGTERM: False makes every bot leave (drain); True leaves them
    # running for the next control plane (upgrades).
    keep_bots_on_shutdown: bool = False
    drain_timeout: float = Field(default=30.0, gt=0)
    heartbeat_timeout: float = Field(default=10.0, gt=0)
    # Where bots run: "local" (a keeper process per bot on this host) or
    # "ray" (a detached Ray actor per bot, placed by the callbot_slot
    # resource; needs the callbot[ray] extra and ray_address).
    launcher: Literal["local", "ray"] = "local"
    # The Ray cluster's GCS address (host:port) the control plane joins as a
    # driver; "auto" finds a cluster started on this host.
    ray_address: str | None = None
    # The Ray namespace the bots' named actors live in.
    ray_namespace: str = "callbot"
    # Bot workers kept started with their imports done (0: none).
    warm_pool: int = Field(default=0, ge=0, le=100)
    # Hosts a bot's server_url and a webhook URL may name (exact, lower case).
    server_hosts: list[str] = Field(default_factory=lambda: list(LOOPBACK_HOSTS))
    webhook_hosts: list[str] = Field(default_factory=lambda: list(LOOPBACK_HOSTS))
    # Webhooks every event goes to, besides each bot's own webhook_url.
    webhook_urls: list[str] = Field(default_factory=list)
    # The HMAC-SHA256 key of webhook signatures; generated into data_dir
    # (webhook-secret) when unset.
    webhook_secret: str | None = None
    webhook_retry_window: float = Field(default=86400.0, gt=0)
    # Larger request bodies are refused with 413.
    max_body_bytes: int = Field(default=1 << 20, ge=1024)

    @model_validator(mode="after")
    def _files_root_apart(self) -> ControlPlaneSettings:
        # Over REST, plugins read and write anywhere in the files root: a root
        # holding the data directory would expose the database and the
        # webhook secret.
        root = self.resolved_files_dir().resolve()
        data = self.data_dir.resolve()
        if data == root or data.is_relative_to(root):
            raise ValueError(
                f"files_dir {root} must not hold the data directory {data}"
            )
        return self

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'callbot.db'}"

    def resolved_files_dir(self) -> Path:
        return self.files_dir if self.files_dir is not None else self.data_dir / "files"
