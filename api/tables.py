"""The control plane's database tables (SQLAlchemy 2, migrated by Alembic)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Bots made before revision 0002 have no creating key; theirs is the key-less
# scope, where an Idempotency-Key stays unique on its own.
_NO_KEY = text("api_key_id IS NULL")


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON}


class BotRow(Base):
    """A bot: what it was asked to do, where it is and how to reach it again.

    An Idempotency-Key is unique per API key (``api_key_id``, the key that
    made the bot).
    """

    __tablename__ = "bots"
    __table_args__ = (
        UniqueConstraint(
            "api_key_id", "idempotency_key", name="uq_bots_api_key_idempotency"
        ),
        Index(
            "uq_bots_keyless_idempotency",
            "idempotency_key",
            unique=True,
            sqlite_where=_NO_KEY,
            postgresql_where=_NO_KEY,
        ),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    server_url: Mapped[str] = mapped_column(String(2048))
    room_id: Mapped[str] = mapped_column(String(200), index=True)
    user_id: Mapped[str] = mapped_column(String(200))
    display_name: Mapped[str | None] = mapped_column(String(200))
    webhook_url: Mapped[str | None] = mapped_column(String(2048))
    config: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16), index=True)
    error_code: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(String(2048))
    exit_code: Mapped[int | None] = mapped_column(Integer)
    pid: Mapped[int | None] = mapped_column(Integer)
    keeper_pid: Mapped[int | None] = mapped_column(Integer)
    state_dir: Mapped[str | None] = mapped_column(String(4096))
    report_offset: Mapped[int] = mapped_column(BigInteger, default=0)
    state: Mapped[dict[str, Any]]
    api_key_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("api_keys.id", name="fk_bots_api_key_id")
    )
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class StatusRow(Base):
    """One step of a bot's status history."""

    __tablename__ = "status_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    bot_id: Mapped[str] = mapped_column(
        ForeignKey("bots.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(16))
    code: Mapped[str | None] = mapped_column(String(64))
    message: Mapped[str | None] = mapped_column(String(2048))
    ts: Mapped[float] = mapped_column(Float)


class EventRow(Base):
    """An event of a bot; ``seq`` orders all events, ``event_id`` is stable."""

    __tablename__ = "events"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    bot_id: Mapped[str] = mapped_column(
        ForeignKey("bots.id", ondelete="CASCADE"), index=True
    )
    type: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]]
    ts: Mapped[float] = mapped_column(Float)


class DeliveryRow(Base):
    """One webhook delivery of one event to one URL, with its attempts so far."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_deliveries_due", "done", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(
        ForeignKey("events.event_id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(String(2048))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[bool] = mapped_column(default=False)
    delivered: Mapped[bool] = mapped_column(default=False)
    next_attempt_at: Mapped[float] = mapped_column(Float)
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(2048))
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class ApiKeyRow(Base):
    """An API key, kept only as its SHA-256 hash."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[float] = mapped_column(Float)
    revoked: Mapped[bool] = mapped_column(default=False)
