"""Where the control plane keeps bots, their history and events: one database.

SQLite (a file under the data directory) by default, PostgreSQL by URL. Calls
are short synchronous transactions; the schema is brought up to date by the
Alembic migrations in ``api/migrations`` when the store opens.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

import api.migrations
from api.models import TERMINAL_STATUSES, StatusChange
from api.record import BotRecord, RecordEvent
from api.tables import ApiKeyRow, BotRow, DeliveryRow, EventRow, StatusRow

logger = logging.getLogger(__name__)


def sqlite_url(data_dir: Path) -> str:
    """The default database: ``callbot.db`` in the data directory."""
    return f"sqlite:///{data_dir / 'callbot.db'}"


@dataclass
class Delivery:
    """A webhook delivery that is due, with the event it carries."""

    id: int
    url: str
    attempts: int
    created_at: float
    event: RecordEvent


class IdempotencyConflict(Exception):
    """An Idempotency-Key reused with another request body."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def migrate(connection: Connection) -> None:
    """Bring the schema on this connection to the newest revision."""
    config = Config()
    config.set_main_option("script_location", str(Path(api.migrations.__file__).parent))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


class Store:
    """Bots, status history, events, webhook deliveries and API keys."""

    # Known limit: calls run synchronously on the event loop (short transactions),
    # all bots are loaded at start-up, and events are never pruned.

    def __init__(self, url: str = "sqlite://") -> None:
        # Calls come from the event loop and from the app's thread pool (sync
        # dependencies such as the API key check). An in-memory SQLite store
        # is one shared connection, and SQLite serialises writers anyway, so
        # its transactions take turns; PostgreSQL has a connection per call.
        self._lock: AbstractContextManager[Any] = nullcontext()
        if url.startswith("sqlite"):
            self._lock = threading.RLock()
            memory = url in ("sqlite://", "sqlite:///:memory:")
            self.engine: Engine = create_engine(
                url,
                connect_args={"check_same_thread": False},
                poolclass=StaticPool if memory else None,
            )
            event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            self.engine = create_engine(url, pool_pre_ping=True)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # Webhooks every event goes to, besides its bot's own webhook_url.
        self.webhook_urls: list[str] = []
        with self.engine.connect() as connection:
            self._migrate(connection)
        logger.info("store open on %s", self.engine.url.render_as_string())

    def close(self) -> None:
        self.engine.dispose()

    def _migrate(self, connection: Connection) -> None:
        if connection.dialect.name != "sqlite":
            with connection.begin():
                migrate(connection)
            return
        # SQLite changes a table by copying it and dropping the old one; with
        # foreign keys on, that drop would cascade to the bot's history and
        # events. The pragma is a no-op inside a transaction, so it goes
        # around it, and the copy is checked before the commit.
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.commit()
        try:
            with connection.begin():
                migrate(connection)
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                if broken:
                    raise RuntimeError(f"migration broke foreign keys: {broken[:5]}")
        finally:
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            connection.commit()

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with self._lock, self._sessions.begin() as session:
            yield session

    # ---------------------------------------------------------------- bots

    def add_bot(
        self,
        record: BotRecord,
        *,
        api_key_id: str | None = None,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
    ) -> list[RecordEvent]:
        """Insert a new bot made by the key ``api_key_id``.

        Raises IdempotencyConflict when that key already used this
        ``idempotency_key``.
        """
        try:
            with self._session() as session:
                session.add(
                    BotRow(
                        id=record.bot_id,
                        server_url=record.server_url,
                        room_id=record.room_id,
                        user_id=record.user_id,
                        display_name=record.display_name,
                        webhook_url=record.webhook_url,
                        config=record.worker_config(),
                        status=record.status,
                        report_offset=0,
                        state=record.snapshot(),
                        api_key_id=api_key_id,
                        idempotency_key=idempotency_key,
                        request_hash=request_hash,
                        created_at=record.created_at,
                        updated_at=record.updated_at,
                    )
                )
                session.flush()
                return self._write_changes(session, record)
        except IntegrityError as exc:
            if idempotency_key is None:
                raise
            raise IdempotencyConflict(idempotency_key) from exc

    def save(self, record: BotRecord) -> list[RecordEvent]:
        """Write the record's state and its new history and events in one go.

        The report offset goes in the same transaction, so a restart re-reads
        exactly the reports whose effects were not saved.
        """
        with self._session() as session:
            session.execute(
                update(BotRow)
                .where(BotRow.id == record.bot_id)
                .values(
                    status=record.status,
                    error_code=record.error_code,
                    reason=record.reason,
                    exit_code=record.exit_code,
                    pid=record.pid,
                    keeper_pid=record.keeper_pid,
                    state_dir=record.state_dir,
                    report_offset=record.report_offset,
                    state=record.snapshot(),
                    updated_at=record.updated_at,
                )
            )
            return self._write_changes(session, record)

    def _write_changes(self, session: Session, record: BotRecord) -> list[RecordEvent]:
        changes = record.take_changes()
        for change in changes.history:
            session.add(
                StatusRow(
                    bot_id=record.bot_id,
                    status=change.status,
                    code=change.code,
                    message=change.message,
                    ts=change.ts,
                )
            )
        rows = [
            EventRow(
                event_id=e.event_id, bot_id=e.bot_id, type=e.type, data=e.data, ts=e.ts
            )
            for e in changes.events
        ]
        session.add_all(rows)
        session.flush()
        for stored, row in zip(changes.events, rows, strict=True):
            stored.seq = row.seq

        # Deliveries are queued in the same transaction as their events, so
        # a crash between the two cannot lose a webhook.
        urls = list(self.webhook_urls)
        if record.webhook_url is not None and record.webhook_url not in urls:
            urls.append(record.webhook_url)
        now = record.updated_at
        session.add_all(
            DeliveryRow(
                event_id=e.event_id,
                url=url,
                attempts=0,
                done=False,
                delivered=False,
                next_attempt_at=now,
                created_at=now,
                updated_at=now,
            )
            for e in changes.events
            for url in urls
        )
        return changes.events

    def delete_bot(self, bot_id: str) -> None:
        """Forget a bot that never started."""
        with self._session() as session:
            row = session.get(BotRow, bot_id)
            if row is not None:
                session.delete(row)

    def find_idempotent(
        self, key: str, *, api_key_id: str | None
    ) -> tuple[str, str | None] | None:
        """The bot id and request hash stored under an API key's Idempotency-Key.

        ``api_key_id`` None is the scope of the bots made without a key (those
        from before revision 0002); no API key sees them.
        """
        owner = (
            BotRow.api_key_id.is_(None)
            if api_key_id is None
            else BotRow.api_key_id == api_key_id
        )
        with self._session() as session:
            row = session.execute(
                select(BotRow.id, BotRow.request_hash)
                .where(owner)
                .where(BotRow.idempotency_key == key)
            ).first()
            return None if row is None else (row[0], row[1])

    def load_bots(self) -> list[BotRecord]:
        """Every stored bot as a record, oldest first."""
        with self._session() as session:
            rows = session.scalars(select(BotRow).order_by(BotRow.created_at)).all()
            histories: dict[str, list[StatusChange]] = {}
            for h in session.scalars(select(StatusRow).order_by(StatusRow.id)):
                histories.setdefault(h.bot_id, []).append(
                    StatusChange(
                        status=h.status,  # type: ignore[arg-type]
                        code=h.code,
                        message=h.message,
                        ts=h.ts,
                    )
                )
            return [self._record(row, histories.get(row.id, [])) for row in rows]

    @staticmethod
    def _record(row: BotRow, history: list[StatusChange]) -> BotRecord:
        config = dict(row.config)
        options = {
            k: v
            for k, v in config.items()
            if k
            not in (
                "bot_id",
                "server_url",
                "room_id",
                "user_id",
                "display_name",
                "ice_addresses",
            )
        }
        record = BotRecord(
            row.id,
            server_url=row.server_url,
            room_id=row.room_id,
            user_id=row.user_id,
            display_name=row.display_name,
            now=row.created_at,
            ice_addresses=config.get("ice_addresses"),
            webhook_url=row.webhook_url,
            options=options,
        )
        record.restore(row.state, history)
        record.status = row.status  # type: ignore[assignment]
        record.error_code = row.error_code
        record.reason = row.reason
        record.exit_code = row.exit_code
        record.pid = row.pid
        record.keeper_pid = row.keeper_pid
        record.state_dir = row.state_dir
        record.report_offset = row.report_offset
        record.updated_at = row.updated_at
        return record

    def history(self, bot_id: str) -> list[StatusChange]:
        with self._session() as session:
            rows = session.scalars(
                select(StatusRow)
                .where(StatusRow.bot_id == bot_id)
                .order_by(StatusRow.id)
            )
            return [
                StatusChange(
                    status=r.status,  # type: ignore[arg-type]
                    code=r.code,
                    message=r.message,
                    ts=r.ts,
                )
                for r in rows
            ]

    def running_count(self) -> int:
        with self._session() as session:
            return len(
                session.scalars(
                    select(BotRow.id).where(BotRow.status.not_in(TERMINAL_STATUSES))
                ).all()
            )

    # -------------------------------------------------------------- events

    def events(
        self, *, bot_id: str | None = None, after: int = 0, limit: int = 100
    ) -> list[RecordEvent]:
        """Events in order, after the sequence number ``after``."""
        query = select(EventRow).where(EventRow.seq > after)
        if bot_id is not None:
            query = query.where(EventRow.bot_id == bot_id)
        with self._session() as session:
            rows = session.scalars(query.order_by(EventRow.seq).limit(limit))
            return [_event(r) for r in rows]

    # ------------------------------------------------------------ webhooks

    def due_deliveries(self, now: float, limit: int = 50) -> list[Delivery]:
        with self._session() as session:
            rows = session.execute(
                select(DeliveryRow, EventRow)
                .join(EventRow, EventRow.event_id == DeliveryRow.event_id)
                .where(DeliveryRow.done.is_(False))
                .where(DeliveryRow.next_attempt_at <= now)
                .order_by(EventRow.seq)
                .limit(limit)
            ).all()
            return [
                Delivery(
                    id=d.id,
                    url=d.url,
                    attempts=d.attempts,
                    created_at=d.created_at,
                    event=_event(e),
                )
                for d, e in rows
            ]

    def next_delivery_at(self) -> float | None:
        with self._session() as session:
            rows = session.scalars(
                select(DeliveryRow.next_attempt_at)
                .where(DeliveryRow.done.is_(False))
                .order_by(DeliveryRow.next_attempt_at)
                .limit(1)
            ).all()
            return rows[0] if rows else None

    def record_attempt(
        self,
        delivery_id: int,
        *,
        now: float,
        status: int | None,
        error: str | None,
        delivered: bool,
        next_attempt_at: float | None,
    ) -> None:
        """Note one attempt; ``next_attempt_at`` None ends the delivery."""
        with self._session() as session:
            row = session.get(DeliveryRow, delivery_id)
            if row is None:
                return
            row.attempts += 1
            row.last_status = status
            row.last_error = error
            row.delivered = delivered
            row.done = delivered or next_attempt_at is None
            if next_attempt_at is not None:
                row.next_attempt_at = next_attempt_at
            row.updated_at = now

    def deliveries(self, bot_id: str) -> list[dict[str, Any]]:
        """The delivery log of a bot's events."""
        with self._session() as session:
            rows = session.execute(
                select(DeliveryRow, EventRow.type)
                .join(EventRow, EventRow.event_id == DeliveryRow.event_id)
                .where(EventRow.bot_id == bot_id)
                .order_by(DeliveryRow.id)
            ).all()
            return [
                {
                    "event_id": d.event_id,
                    "event_type": t,
                    "url": d.url,
                    "attempts": d.attempts,
                    "delivered": d.delivered,
                    "done": d.done,
                    "last_status": d.last_status,
                    "last_error": d.last_error,
                    "next_attempt_at": None if d.done else d.next_attempt_at,
                    "updated_at": d.updated_at,
                }
                for d, t in rows
            ]

    # ------------------------------------------------------------ API keys

    def add_key(self, key_id: str, name: str, key_hash: str, now: float) -> None:
        with self._session() as session:
            session.add(
                ApiKeyRow(
                    id=key_id,
                    name=name,
                    key_hash=key_hash,
                    created_at=now,
                    revoked=False,
                )
            )

    def list_keys(self) -> list[tuple[str, str, float, bool]]:
        """Every key as (id, name, created_at, revoked), oldest first."""
        with self._session() as session:
            rows = session.scalars(
                select(ApiKeyRow).order_by(ApiKeyRow.created_at)
            ).all()
            return [(r.id, r.name, r.created_at, r.revoked) for r in rows]

    def revoke_key(self, key_id: str) -> bool:
        """Revoke a key (it stays, for the bots it made); False if unknown."""
        with self._session() as session:
            row = session.get(ApiKeyRow, key_id)
            if row is None:
                return False
            row.revoked = True
            return True

    def key_by_hash(self, key_hash: str) -> str | None:
        """The id of the live key with this hash."""
        with self._session() as session:
            row = session.scalars(
                select(ApiKeyRow)
                .where(ApiKeyRow.key_hash == key_hash)
                .where(ApiKeyRow.revoked.is_(False))
            ).first()
            return None if row is None else row.id


def _event(row: EventRow) -> RecordEvent:
    return RecordEvent(
        event_id=row.event_id,
        bot_id=row.bot_id,
        type=row.type,
        data=dict(row.data),
        ts=row.ts,
        seq=row.seq,
    )
