"""Leave rules on an injected clock: max duration, nobody joined, alone."""

from __future__ import annotations

from api.leaverules import LeaveRules, LeaveWatch
from api.record import BotRecord


def in_call(participants: list[str], now: float = 10.0) -> BotRecord:
    record = BotRecord(
        "b-1",
        server_url="ws://127.0.0.1:4000/socket",
        room_id="lobby",
        user_id="bot-1",
        display_name=None,
        now=0.0,
    )
    record.apply({"type": "status", "status": "connecting"}, now - 1)
    record.apply({"type": "status", "status": "in_call"}, now)
    record.participants = participants
    return record


def test_max_duration_counts_from_creation() -> None:
    watch = LeaveWatch(LeaveRules(max_duration=30.0))
    record = in_call([])

    assert watch.check(record, 29.9) is None
    assert watch.check(record, 30.0) == "max_duration"


def test_nobody_joined_counts_from_in_call_and_stops_once_someone_came() -> None:
    watch = LeaveWatch(LeaveRules(nobody_joined_timeout=5.0))
    record = in_call([], now=10.0)

    assert watch.check(record, 14.9) is None
    assert watch.check(record, 15.0) == "nobody_joined"

    other = LeaveWatch(LeaveRules(nobody_joined_timeout=5.0))
    assert other.check(in_call(["bot-2"], now=10.0), 12.0) is None
    lone = in_call([], now=10.0)
    assert other.check(lone, 20.0) is None  # someone came before


def test_alone_counts_from_the_last_participant_leaving() -> None:
    watch = LeaveWatch(LeaveRules(alone_timeout=3.0))
    record = in_call([], now=10.0)

    assert watch.check(record, 100.0) is None  # nobody ever came: not "alone"
    record.participants = ["bot-2"]
    assert watch.check(record, 101.0) is None
    record.participants = []
    assert watch.check(record, 102.0) is None
    assert watch.check(record, 104.9) is None
    record.participants = ["bot-3"]
    assert watch.check(record, 105.5) is None
    record.participants = []
    assert watch.check(record, 106.0) is None
    assert watch.check(record, 109.0) == "alone"


def test_no_rule_applies_before_in_call_but_max_duration() -> None:
    record = BotRecord(
        "b-1",
        server_url="ws://127.0.0.1:4000/socket",
        room_id="lobby",
        user_id="bot-1",
        display_name=None,
        now=0.0,
    )
    rules = LeaveRules(max_duration=10.0, alone_timeout=1.0, nobody_joined_timeout=1.0)
    watch = LeaveWatch(rules)

    assert watch.check(record, 9.0) is None
    assert watch.check(record, 10.0) == "max_duration"
