"""The store on SQLite and on a real PostgreSQL server: bots, history, events."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import inspect, text

from api.record import BotRecord
from api.store import IdempotencyConflict, Store


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
            assert [row[0] for row in version] == ["0001"]
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


def test_an_idempotency_key_is_unique(store: Store) -> None:
    store.add_bot(make_record("b-1"), idempotency_key="k1", request_hash="h1")

    assert store.find_idempotent("k1") == ("b-1", "h1")
    assert store.find_idempotent("k2") is None
    with pytest.raises(IdempotencyConflict):
        store.add_bot(make_record("b-2"), idempotency_key="k1", request_hash="h2")


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
