"""CallServer state on a ManualClock with an Engine double (no sockets)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from callbot.server.call_server import CallFull, CallServer
from callbot.server.calls import Calls
from callbot.server.clock import ManualClock
from callbot.server.pubsub import PubSub
from callbot.server.settings import ServerSettings
from tests.callbot.server_fakes import FakeEngine, Recorder


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def pubsub() -> PubSub:
    return PubSub()


@pytest.fixture
def calls(clock: ManualClock, pubsub: PubSub) -> Calls:
    return Calls(ServerSettings(), clock, pubsub, FakeEngine)


@pytest.fixture
def room(pubsub: PubSub) -> Recorder:
    recorder = Recorder()
    pubsub.subscribe("call:r1", recorder)
    return recorder


def engine_of(call: CallServer) -> FakeEngine:
    assert isinstance(call.engine, FakeEngine)
    return call.engine


def tier_pushes(room: Recorder) -> list[dict[str, Any]]:
    return [p for e, p in room.events() if e == "tier_changed"]


def test_endpoint_ids_are_user_and_a_growing_number(calls: Calls) -> None:
    call = calls.ensure("r1")
    first = call.add_participant("u-1", {}).endpoint_id
    second = call.add_participant("u_2", {}).endpoint_id
    assert re.fullmatch(r"u-1_\d+", first)
    assert second.rpartition("_")[0] == "u_2"
    assert int(second.rpartition("_")[2]) > int(first.rpartition("_")[2])
    assert engine_of(call).endpoints == [first, second]


def test_join_broadcasts_six_fields_and_the_table_has_ten(
    calls: Calls, room: Recorder, clock: ManualClock
) -> None:
    call = calls.ensure("r1")
    clock.advance(1_234)
    participant = call.add_participant("u1", {"name": "Bot 1"})
    assert room.events() == [
        (
            "participant_joined",
            {
                "user_id": "u1",
                "endpoint_id": participant.endpoint_id,
                "user_info": {"name": "Bot 1"},
                "joined_at": "2026-03-02T10:00:01.234000Z",
                "audio_enabled": True,
                "video_enabled": True,
            },
        )
    ]
    entry = call.participants_table()["u1"]
    assert len(entry) == 10
    assert entry["quality_level"] == "high"
    assert (entry["speaking"], entry["tier"], entry["attention_level"]) == (
        False,
        "viewer",
        "high",
    )


def test_same_user_join_replaces_the_endpoint_silently(
    calls: Calls, room: Recorder
) -> None:
    call = calls.ensure("r1")
    old = call.add_participant("u1", {}).endpoint_id
    room.clear()
    new = call.add_participant("u1", {"name": "again"}).endpoint_id
    assert new != old
    assert [e for e, _ in room.events()] == ["participant_joined"]
    assert engine_of(call).removed == [old]
    # The old endpoint's late removal notice is ignored.
    call.on_endpoint_removed(old)
    assert list(call.participants) == ["u1"]


def test_call_limit_is_one_hundred(calls: Calls) -> None:
    call = calls.ensure("r1")
    for n in range(100):
        call.add_participant(f"u{n}", {})
    with pytest.raises(CallFull):
        call.add_participant("late", {})
    call.add_participant("u5", {})  # a replacement still fits


def test_quality_follows_the_count_not_set_quality(
    calls: Calls, room: Recorder
) -> None:
    call = calls.ensure("r1")
    for n in range(5):
        call.add_participant(f"u{n}", {})
    assert call.participants_table()["u4"]["quality_level"] == "low"
    assert call.participants_table()["u0"]["quality_level"] == "high"  # not updated
    room.clear()
    call.set_quality("high")
    assert room.events() == [("quality_changed", {"quality": "low"})]
    assert call.quality_profile == "high"
    call.set_quality("ultra")
    assert call.quality_profile == "auto"
    room.clear()
    call.remove_participant("u4")
    call.remove_participant("u3")
    assert room.events() == [
        ("participant_left", {"user_id": "u4"}),
        ("quality_changed", {"quality": "medium"}),
        ("participant_left", {"user_id": "u3"}),
        ("quality_changed", {"quality": "medium"}),
    ]
    assert {p["quality_level"] for p in call.participants_table().values()} == {
        "medium"
    }


def test_remove_unknown_user_is_not_in_call(calls: Calls) -> None:
    assert calls.ensure("r1").remove_participant("nobody") is False


def test_tier_tick_every_five_seconds_turns_recent_into_viewer(
    calls: Calls, room: Recorder, clock: ManualClock
) -> None:
    call = calls.ensure("r1")  # tick armed at 0: fires at 5 000, 10 000, ...
    call.add_participant("u1", {})
    clock.advance(7_000)
    call.update_speaking("u1", True)
    clock.advance(1_000)
    call.update_speaking("u1", False)
    assert tier_pushes(room) == [
        {"user_id": "u1", "tier": "active"},
        {"user_id": "u1", "tier": "recent"},
    ]
    clock.advance(35_000 - 8_000)  # tick at 35 000: 28 s after the true
    assert len(tier_pushes(room)) == 2
    clock.advance(5_000)  # tick at 40 000: first one >= 37 000
    assert tier_pushes(room)[2:] == [{"user_id": "u1", "tier": "viewer"}]


def test_low_attention_pushes_idle(calls: Calls, room: Recorder) -> None:
    call = calls.ensure("r1")
    call.add_participant("u1", {})
    call.update_attention("u1", "low")
    call.update_attention("u1", "whatever")
    assert tier_pushes(room) == [
        {"user_id": "u1", "tier": "idle"},
        {"user_id": "u1", "tier": "viewer"},
    ]
    assert call.participants_table()["u1"]["attention_level"] == "medium"


def test_set_adaptive_quality(calls: Calls, room: Recorder) -> None:
    call = calls.ensure("r1")
    call.add_participant("u1", {})
    room.clear()
    call.set_adaptive_quality(False)
    assert room.events() == [("adaptive_quality_changed", {"enabled": False})]
    assert call.participants_table()["u1"]["tier"] == "active"
    room.clear()
    call.set_adaptive_quality(True)
    assert room.events() == [("tier_changed", {"user_id": "u1", "tier": "viewer"})]


def test_adaptive_quality_off_in_settings_makes_every_joiner_active(
    clock: ManualClock, pubsub: PubSub, room: Recorder
) -> None:
    calls = Calls(ServerSettings(adaptive_quality=False), clock, pubsub, FakeEngine)
    call = calls.ensure("r1")
    assert not call.adaptive_quality_enabled
    call.add_participant("u1", {})
    call.add_participant("u2", {})
    call.update_speaking("u1", True)
    clock.advance(35_000)

    table = call.participants_table()
    assert [table[u]["tier"] for u in ("u1", "u2")] == ["active", "active"]
    events = [e for e, _ in room.events() if e != "quality_changed"]
    joined_then_off = ["participant_joined", "adaptive_quality_changed"]
    assert events == joined_then_off * 2
    assert tier_pushes(room) == []


async def test_inactivity_stop_ends_the_call_and_restarts_it_empty(
    calls: Calls, room: Recorder, clock: ManualClock
) -> None:
    call = calls.ensure("r1")
    call.add_participant("u1", {})
    clock.advance(1_800_000)  # not empty: nothing happens, not re-armed
    assert calls.get("r1") is call
    call.remove_participant("u1")
    room.clear()
    clock.advance(1_799_999)
    assert room.events() == []
    clock.advance(1)
    assert room.events() == [("call_ended", {})]
    fresh = calls.get("r1")
    assert fresh is not None and fresh is not call and fresh.participants == {}
    assert engine_of(fresh) is not engine_of(call)
    await calls.close()
    assert engine_of(call).closed and engine_of(fresh).closed


async def test_engine_paths_do_not_rearm_inactivity(
    calls: Calls, room: Recorder, clock: ManualClock
) -> None:
    call = calls.ensure("r1")
    call.add_participant("u1", {})
    call.engine.crash_endpoint(call.participants["u1"].endpoint_id, "test")
    assert room.events()[-1] == ("participant_left", {"user_id": "u1", "crashed": True})
    clock.advance(3_600_000)
    assert calls.get("r1") is call
    await calls.close()


def test_engine_notifications(calls: Calls, room: Recorder, pubsub: PubSub) -> None:
    call = calls.ensure("r1")
    a = call.add_participant("a", {}).endpoint_id
    call.add_participant("b", {})
    personal = Recorder()
    pubsub.subscribe("call:r1:a", personal)
    room.clear()

    call.on_media_event(a, '{"type":"connected"}')
    call.on_media_event("gone_1", '{"type":"connected"}')
    assert personal.events() == [("media_event", {"data": '{"type":"connected"}'})]
    assert room.events() == []

    call.on_track_added(a, f"{a}:t1", "video", "VP8")
    call.on_track_removed(a, f"{a}:t1")
    call.on_track_added(a, f"{a}:t2", "audio", "opus")
    assert room.events() == [
        (
            "track_added",
            {
                "track_id": f"{a}:t1",
                "endpoint_id": a,
                "type": "video",
                "encoding": "VP8",
            },
        ),
        ("track_removed", {"track_id": f"{a}:t1"}),
        (
            "track_added",
            {
                "track_id": f"{a}:t2",
                "endpoint_id": a,
                "type": "audio",
                "encoding": "opus",
            },
        ),
    ]
    room.clear()
    call.on_endpoint_removed(a)
    assert room.events() == [("participant_left", {"user_id": "a"})]  # no quality
    assert call.track_registry == {}


def test_media_event_of_a_crashed_participant_is_dropped(calls: Calls) -> None:
    call = calls.ensure("r1")
    endpoint = call.add_participant("a", {}).endpoint_id
    call.media_event("a", "{}")
    call.engine.crash_endpoint(endpoint, "test")
    call.media_event("a", "{}")
    assert engine_of(call).media_events == [(endpoint, "{}")]
