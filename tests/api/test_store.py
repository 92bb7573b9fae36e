"""The store on SQLite and on a real PostgreSQL server: bots, history, events."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import JSON, create_engine, insert, inspect, select, text
from sqlalchemy.sql import column, table

import api.migrations
from api.record import BotRecord
from api.store import IdempotencyConflict, Store
from api.tables import Base, BotRow


def make_record(bot_id: str = "b-1", now: float = 100.0) -> BotRecord:
    return BotRecord(
        bot_id,
        server_url="ws://127.0.0.1:4000/socket",
        room_id="lobby",
        user_id="bot-1",
        display_name="Bot 1",
        now=now,
        webhook_url="http://127.0.0.1:9/hook",
        options={"duration": 30.0},
    )


def status(value: str, reason: str | None = None) -> bytes:
    return b'{"type": "status", "status": "%s", "reason": %s}' % (
        value.encode(),
        b"null" if reason is None else b'"%s"' % reason.encode(),
    )


# The tables as revision 0001 made them: what a database of the previous
# release holds.
BOTS_0001 = table(
    "bots",
    *(
        column(name)
        for name in (
            "id",
            "server_url",
            "room_id",
            "user_id",
            "display_name",
            "webhook_url",
            "status",
            "reason",
            "state_dir",
            "report_offset",
            "idempotency_key",
            "request_hash",
            "created_at",
            "updated_at",
        )
    ),
    column("config", JSON),
    column("state", JSON),
)
STATUS_0001 = table("status_history", column("bot_id"), column("status"), column("ts"))
EVENTS_0001 = table(
    "events",
    column("event_id"),
    column("bot_id"),
    column("type"),
    column("data", JSON),
    column("ts"),
)
KEYS_0001 = table(
    "api_keys",
    column("id"),
    column("name"),
    column("key_hash"),
    column("created_at"),
    column("revoked"),
)


def make_0001_database(
    url: str, *, key_id: str, key_hash: str, idempotency_key: str
) -> None:
    """A database at revision 0001 with one API key and one bot that has left.

    The bot ``b-old`` was made with ``idempotency_key`` (request hash
    ``h-old``); revision 0001 did not record which key made it.
    """
    record = make_record("b-old")
    for line in (status("connecting"), status("in_call"), status("leaving")):
        record.feed_line(line, now=101.0)
    record.feed_line(status("left", "left on request"), now=105.0)
    changes = record.take_changes()
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            config = Config()
            config.set_main_option(
                "script_location", str(Path(api.migrations.__file__).parent)
            )
            config.attributes["connection"] = connection
            command.upgrade(config, "0001")
            connection.execute(
                insert(KEYS_0001).values(
                    id=key_id,
                    name="old",
                    key_hash=key_hash,
                    created_at=1.0,
                    revoked=False,
                )
            )
            connection.execute(
                insert(BOTS_0001).values(
                    id=record.bot_id,
                    server_url=record.server_url,
                    room_id=record.room_id,
                    user_id=record.user_id,
                    display_name=record.display_name,
                    webhook_url=record.webhook_url,
                    config=record.worker_config(),
                    status=record.status,
                    reason=record.reason,
                    state_dir="/tmp/b-old",
                    report_offset=512,
                    state=record.snapshot(),
                    idempotency_key=idempotency_key,
                    request_hash="h-old",
                    created_at=record.created_at,
                    updated_at=record.updated_at,
                )
            )
            connection.execute(
                insert(STATUS_0001),
                [
                    {"bot_id": "b-old", "status": h.status, "ts": h.ts}
                    for h in changes.history
                ],
            )
            connection.execute(
                insert(EVENTS_0001),
                [
                    {
                        "event_id": e.event_id,
                        "bot_id": e.bot_id,
                        "type": e.type,
                        "data": e.data,
                        "ts": e.ts,
                    }
                    for e in changes.events
                ],
            )
    finally:
        engine.dispose()


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    s = Store(database_url)
    yield s
    s.close()


def test_migrations_create_the_schema_once(database_url: str) -> None:
    first = Store(database_url)
    first.close()
    again = Store(database_url)
    try:
        tables = set(inspect(again.engine).get_table_names())
        with again.engine.connect() as conn:
            version = conn.execute(text("select version_num from alembic_version"))
            assert [row[0] for row in version] == ["0002"]
    finally:
        again.close()
    assert {"bots", "status_history", "events", "webhook_deliveries"} <= tables


def test_a_bot_its_history_and_offset_survive_a_reopen(database_url: str) -> None:
    store = Store(database_url)
    record = make_record()
    store.add_bot(record)
    record.feed_line(status("connecting"), now=101.0)
    record.feed_line(status("in_call"), now=102.0)
    record.feed_line(b'{"type": "joined", "endpoint_id": "bot-1_7"}', now=102.0)
    record.state_dir, record.report_offset, record.pid = "/tmp/b-1", 4242, 77
    store.save(record)
    store.close()

    reopened = Store(database_url)
    [loaded] = reopened.load_bots()
    reopened.close()

    assert loaded.status == "in_call"
    assert [(h.status, h.ts) for h in loaded.history] == [
        ("starting", 100.0),
        ("connecting", 101.0),
        ("in_call", 102.0),
    ]
    assert (loaded.state_dir, loaded.report_offset, loaded.pid) == (
        "/tmp/b-1",
        4242,
        77,
    )
    assert loaded.endpoint_id == "bot-1_7"
    assert loaded.webhook_url == "http://127.0.0.1:9/hook"
    assert loaded.worker_config()["duration"] == 30.0
    assert loaded.take_changes().events == []


def test_a_failure_keeps_its_code_and_message(store: Store) -> None:
    record = make_record()
    store.add_bot(record)
    record.feed_line(status("connecting"), now=101.0)
    record.fail("no report from the bot for 10 s", 111.0, code="heartbeat_lost")
    store.save(record)

    [loaded] = store.load_bots()
    assert loaded.error is not None
    assert (loaded.error.code, loaded.error.message) == (
        "heartbeat_lost",
        "no report from the bot for 10 s",
    )
    assert [(h.status, h.code) for h in store.history("b-1")][-1] == (
        "failed",
        "heartbeat_lost",
    )


def test_events_are_numbered_in_order_and_paged(store: Store) -> None:
    one, two = make_record("b-1"), make_record("b-2")
    store.add_bot(one)
    store.add_bot(two)
    one.feed_line(status("connecting"), now=101.0)
    two.feed_line(status("connecting"), now=101.5)
    one.feed_line(
        b'{"type": "event", "event": "participant_joined", "user_id": "bot-2"}',
        now=102.0,
    )
    saved = store.save(one) + store.save(two)

    seqs = [e.seq for e in saved]
    assert seqs == sorted(seqs) and None not in seqs
    first = store.events(bot_id="b-1", limit=2)
    assert [e.type for e in first] == ["status", "status"]
    assert [e.data.get("status") for e in first] == ["starting", "connecting"]
    rest = store.events(bot_id="b-1", after=first[-1].seq or 0)
    assert [(e.type, e.data["user_id"]) for e in rest] == [
        ("participant_joined", "bot-2")
    ]
    assert len(store.events()) == 5


def test_an_idempotency_key_is_unique_per_api_key(store: Store) -> None:
    store.add_key("k-a", "a", "aa" * 32, now=1.0)
    store.add_key("k-b", "b", "bb" * 32, now=1.0)
    store.add_bot(
        make_record("b-1"), api_key_id="k-a", idempotency_key="i1", request_hash="h1"
    )
    store.add_bot(
        make_record("b-2"), api_key_id="k-b", idempotency_key="i1", request_hash="h2"
    )

    assert store.find_idempotent("i1", api_key_id="k-a") == ("b-1", "h1")
    assert store.find_idempotent("i1", api_key_id="k-b") == ("b-2", "h2")
    assert store.find_idempotent("i2", api_key_id="k-a") is None
    assert store.find_idempotent("i1", api_key_id=None) is None
    with pytest.raises(IdempotencyConflict):
        store.add_bot(
            make_record("b-3"),
            api_key_id="k-a",
            idempotency_key="i1",
            request_hash="h3",
        )
    assert {b.bot_id for b in store.load_bots()} == {"b-1", "b-2"}


def test_without_an_api_key_an_idempotency_key_is_still_unique(store: Store) -> None:
    # The key-less scope (bots from before revision 0002) is one scope too.
    store.add_bot(make_record("b-1"), idempotency_key="i1", request_hash="h1")

    assert store.find_idempotent("i1", api_key_id=None) == ("b-1", "h1")
    with pytest.raises(IdempotencyConflict):
        store.add_bot(make_record("b-2"), idempotency_key="i1", request_hash="h2")
    # Bots without an Idempotency-Key never collide.
    store.add_bot(make_record("b-3"))
    store.add_bot(make_record("b-4"))
    assert len(store.load_bots()) == 3


def test_migration_0002_keeps_a_0001_bot_and_gives_it_no_key(
    database_url: str,
) -> None:
    make_0001_database(
        database_url, key_id="k-old", key_hash="ab" * 32, idempotency_key="order-1"
    )

    store = Store(database_url)
    try:
        with store.engine.connect() as conn:
            version = conn.execute(text("select version_num from alembic_version"))
            assert [row[0] for row in version] == ["0002"]
            owners = conn.execute(select(BotRow.id, BotRow.api_key_id)).all()
        assert [tuple(row) for row in owners] == [("b-old", None)]
        [loaded] = store.load_bots()
        assert (loaded.bot_id, loaded.status, loaded.reason) == (
            "b-old",
            "left",
            "left on request",
        )
        assert [h.status for h in loaded.history] == [
            "starting",
            "connecting",
            "in_call",
            "leaving",
            "left",
        ]
        assert (loaded.state_dir, loaded.report_offset) == ("/tmp/b-old", 512)
        statuses = [e.data["status"] for e in store.events(bot_id="b-old")]
        assert statuses == ["starting", "connecting", "in_call", "leaving", "left"]
        assert loaded.worker_config()["duration"] == 30.0
        assert store.key_by_hash("ab" * 32) == "k-old"

        # The old bot belongs to no key: its key cannot replay it...
        assert store.find_idempotent("order-1", api_key_id="k-old") is None
        assert store.find_idempotent("order-1", api_key_id=None) == ("b-old", "h-old")
        store.add_bot(
            make_record("b-new"),
            api_key_id="k-old",
            idempotency_key="order-1",
            request_hash="h-new",
        )
        assert store.find_idempotent("order-1", api_key_id="k-old") == (
            "b-new",
            "h-new",
        )
        # ...and among the key-less bots its Idempotency-Key stays taken.
        with pytest.raises(IdempotencyConflict):
            store.add_bot(make_record("b-x"), idempotency_key="order-1")
    finally:
        store.close()

    again = Store(database_url)
    try:
        assert [b.bot_id for b in again.load_bots()] == ["b-old", "b-new"]
    finally:
        again.close()


def test_the_migrated_schema_is_the_tables_of_the_code(database_url: str) -> None:
    make_0001_database(
        database_url, key_id="k-old", key_hash="ab" * 32, idempotency_key="order-1"
    )
    Store(database_url).close()

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_deliveries_are_due_retried_and_logged(store: Store) -> None:
    store.webhook_urls = ["http://127.0.0.1:8/all"]
    record = make_record()
    [starting] = store.add_bot(record)

    # Queued with the event: the global webhook and the bot's own.
    assert sorted(d.url for d in store.due_deliveries(now=100.0)) == [
        "http://127.0.0.1:8/all",
        "http://127.0.0.1:9/hook",
    ]
    [due] = [d for d in store.due_deliveries(now=100.0) if d.url.endswith("/hook")]
    assert (due.event.event_id, due.attempts) == (starting.event_id, 0)
    store.record_attempt(
        due.id,
        now=100.1,
        status=500,
        error=None,
        delivered=False,
        next_attempt_at=101.0,
    )
    assert [d.url for d in store.due_deliveries(now=100.5)] == [
        "http://127.0.0.1:8/all"
    ]
    [again] = [d for d in store.due_deliveries(now=101.0) if d.url.endswith("/hook")]
    store.record_attempt(
        again.id,
        now=101.1,
        status=200,
        error=None,
        delivered=True,
        next_attempt_at=None,
    )

    log = {d["url"]: d for d in store.deliveries("b-1")}
    hook = log["http://127.0.0.1:9/hook"]
    assert (hook["attempts"], hook["delivered"], hook["last_status"]) == (2, True, 200)
    assert log["http://127.0.0.1:8/all"]["attempts"] == 0


def test_a_bot_that_never_started_is_forgotten_with_its_events(store: Store) -> None:
    store.add_bot(make_record())
    store.delete_bot("b-1")

    assert store.load_bots() == []
    assert store.events() == []


def test_api_keys_are_found_by_hash_only(store: Store) -> None:
    store.add_key("k-1", "ci", "ab" * 32, now=1.0)

    assert store.key_by_hash("ab" * 32) == "k-1"
    assert store.key_by_hash("cd" * 32) is None


def test_the_in_memory_store_takes_calls_from_many_threads_at_once() -> None:
    # The app checks API keys in its thread pool while the event loop saves
    # bots: one shared SQLite connection must never be used twice at once.
    store = Store("sqlite://")
    errors: list[BaseException] = []

    def read() -> None:
        try:
            for _ in range(200):
                store.key_by_hash("0" * 64)
                store.running_count()
                store.load_bots()
        except BaseException as exc:
            errors.append(exc)

    def write(n: int) -> None:
        try:
            for i in range(100):
                store.add_key(f"k{n}-{i}", "x", f"{n:02d}{i:062d}", float(i))
                store.add_bot(make_record(f"b-{n}-{i}"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(3)]
    threads += [threading.Thread(target=write, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert len(store.load_bots()) == 200
    assert store.key_by_hash(f"{1:02d}{99:062d}") == "k1-99"
    store.close()
