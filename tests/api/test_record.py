"""The bot record, fed report lines and exit codes as the launcher would."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from api.record import MAX_EVENTS, BotRecord, describe_exit


def make_record() -> BotRecord:
    return BotRecord(
        "b-1",
        server_url="ws://127.0.0.1:4000/socket",
        room_id="lobby",
        user_id="bot-1",
        display_name="Bot 1",
        now=100.0,
    )


def line(report: dict[str, Any]) -> bytes:
    return json.dumps(report).encode() + b"\n"


def status(value: str, reason: str | None = None) -> bytes:
    return line({"type": "status", "status": value, "reason": reason, "ts": 1.0})


def test_starts_in_starting_with_the_config_the_worker_reads() -> None:
    record = make_record()

    assert record.status == "starting"
    assert record.worker_config() == {
        "bot_id": "b-1",
        "server_url": "ws://127.0.0.1:4000/socket",
        "room_id": "lobby",
        "user_id": "bot-1",
        "display_name": "Bot 1",
    }


def test_status_reports_walk_the_lifecycle() -> None:
    record = make_record()
    seen = []
    for value in ("connecting", "in_call", "leaving", "left"):
        record.feed_line(status(value), now=101.0)
        seen.append(record.status)

    assert seen == ["connecting", "in_call", "leaving", "left"]
    assert record.terminal
    assert record.updated_at == 101.0


def test_joined_and_stats_fill_endpoint_participants_and_tracks() -> None:
    record = make_record()
    record.feed_line(line({"type": "joined", "endpoint_id": "bot-1_12"}), now=101.0)
    record.feed_line(
        line(
            {
                "type": "stats",
                "ts": 102.0,
                "endpoint_id": "bot-1_12",
                "participants": ["bot-2"],
                "tracks": [
                    {
                        "direction": "outbound",
                        "kind": "video",
                        "track_id": "v-out",
                        "frames": 300,
                        "packets": 900,
                        "bytes": 1234567,
                    },
                    {
                        "direction": "inbound",
                        "kind": "video",
                        "track_id": "v-in",
                        "from_user_id": "bot-2",
                        "endpoint_id": "bot-2_13",
                        "frames": 290,
                        "packets": 870,
                        "bytes": 1200000,
                        "width": 640,
                        "height": 480,
                        "ended": False,
                    },
                    {
                        "direction": "inbound",
                        "kind": "audio",
                        "from_user_id": "bot-2",
                        "frames": 490,
                        "packets": 490,
                        "bytes": 50000,
                        "seconds": 9.8,
                        "ended": False,
                    },
                ],
            }
        ),
        now=102.0,
    )

    view = record.view()
    assert view.endpoint_id == "bot-1_12"
    assert view.participants == ["bot-2"]
    by_kind = {(t.direction, t.kind): t for t in view.tracks}
    assert by_kind["outbound", "video"].frames == 300
    video = by_kind["inbound", "video"]
    assert (video.frames, video.width, video.height) == (290, 640, 480)
    assert video.from_user_id == "bot-2"
    assert by_kind["inbound", "audio"].seconds == 9.8


def test_newer_stats_replace_counters_and_keep_vanished_tracks_as_ended() -> None:
    record = make_record()

    def stats(tracks: list[dict[str, Any]]) -> bytes:
        return line({"type": "stats", "participants": [], "tracks": tracks})

    inbound = {"direction": "inbound", "kind": "video", "track_id": "v-in"}
    record.feed_line(stats([{**inbound, "frames": 10}]), now=101.0)
    record.feed_line(stats([{**inbound, "frames": 40}]), now=102.0)
    assert [(t.frames, t.ended) for t in record.tracks] == [(40, False)]

    record.feed_line(stats([]), now=103.0)
    assert [(t.frames, t.ended) for t in record.tracks] == [(40, True)]


def test_participant_events_update_the_roster_and_the_event_log() -> None:
    record = make_record()
    record.feed_line(
        line({"type": "event", "event": "participant_joined", "user_id": "bot-2"}),
        now=101.0,
    )
    record.feed_line(
        line({"type": "event", "event": "participant_joined", "user_id": "bot-2"}),
        now=101.5,
    )
    assert record.participants == ["bot-2"]

    record.feed_line(
        line({"type": "event", "event": "participant_left", "user_id": "bot-2"}),
        now=102.0,
    )
    assert record.participants == []
    assert [(e.event, e.user_id, e.ts) for e in record.events] == [
        ("participant_joined", "bot-2", 101.0),
        ("participant_joined", "bot-2", 101.5),
        ("participant_left", "bot-2", 102.0),
    ]


def test_the_event_log_keeps_only_the_latest_events() -> None:
    record = make_record()
    for i in range(MAX_EVENTS + 5):
        record.apply({"type": "event", "event": "tick", "ts": float(i)}, now=0.0)

    assert len(record.events) == MAX_EVENTS
    assert record.events[0].ts == 5.0


def test_garbage_lines_are_counted_and_change_nothing() -> None:
    record = make_record()
    for text in (
        b"not json\n",
        b"[1, 2]\n",
        status("dancing"),
        line({"type": "stats", "tracks": [{"direction": "sideways"}]}),
        line({"type": "event"}),
    ):
        record.feed_line(text, now=101.0)
    record.feed_line(b"\n", now=101.0)
    record.feed_line(line({"type": "future_report"}), now=101.0)

    assert record.bad_reports == 5
    assert record.status == "starting"
    assert record.tracks == []


def test_after_a_leave_request_a_late_in_call_report_does_not_undo_leaving() -> None:
    record = make_record()
    record.feed_line(status("connecting"), now=100.5)
    record.feed_line(status("in_call"), now=101.0)
    record.request_leave(now=102.0)
    record.feed_line(status("in_call"), now=102.1)

    assert record.status == "leaving"

    record.feed_line(status("left"), now=103.0)
    record.process_exited(0, now=103.1)
    assert (record.status, record.reason, record.exit_code) == (
        "left",
        "left on request",
        0,
    )


def test_sigkill_while_in_call_fails_naming_the_signal() -> None:
    record = make_record()
    record.feed_line(status("connecting"), now=100.5)
    record.feed_line(status("in_call"), now=101.0)
    record.process_exited(-9, now=102.0)

    assert record.status == "failed"
    assert record.reason == "worker killed by SIGKILL (exit code -9)"
    assert record.exit_code == -9
    assert record.view().exit_code == -9


def test_a_crash_with_an_exit_code_fails_naming_the_code() -> None:
    record = make_record()
    record.feed_line(status("connecting"), now=101.0)
    record.process_exited(3, now=102.0)

    assert (record.status, record.reason) == ("failed", "worker exited with code 3")


def test_exiting_cleanly_without_being_asked_to_leave_is_a_failure() -> None:
    record = make_record()
    record.feed_line(status("connecting"), now=100.5)
    record.feed_line(status("in_call"), now=101.0)
    record.process_exited(0, now=102.0)

    assert (record.status, record.reason) == ("failed", "worker exited with code 0")


def test_the_workers_own_failure_reason_is_kept_over_the_exit_code() -> None:
    record = make_record()
    record.feed_line(status("failed", "join refused: unauthorized"), now=101.0)
    record.process_exited(1, now=102.0)

    assert (record.status, record.reason) == ("failed", "join refused: unauthorized")


def test_exit_zero_after_a_leave_request_counts_as_left() -> None:
    record = make_record()
    record.feed_line(status("connecting"), now=100.5)
    record.feed_line(status("in_call"), now=101.0)
    record.request_leave(now=102.0)
    record.process_exited(0, now=103.0)

    assert record.status == "left"


def test_reports_after_the_process_ended_are_ignored() -> None:
    record = make_record()
    record.process_exited(-9, now=102.0)
    record.feed_line(status("in_call"), now=103.0)

    assert record.status == "failed"


def test_describe_exit() -> None:
    assert describe_exit(0) == "worker exited with code 0"
    assert describe_exit(-15) == "worker killed by SIGTERM (exit code -15)"
    assert describe_exit(-200) == "worker killed by signal 200 (exit code -200)"


def test_invalid_status_changes_are_refused_and_counted() -> None:
    record = make_record()
    record.feed_line(status("in_call"), now=101.0)
    record.feed_line(status("left"), now=101.5)

    assert record.status == "starting"
    assert record.refused_transitions == 2

    record.feed_line(status("connecting"), now=102.0)
    record.feed_line(status("in_call"), now=103.0)
    assert record.status == "in_call"
    assert [h.status for h in record.history] == ["starting", "connecting", "in_call"]


def test_history_and_events_carry_times_codes_and_messages() -> None:
    record = make_record()
    record.take_changes()
    record.feed_line(status("connecting"), now=101.0)
    record.feed_line(status("failed", "call_full"), now=102.0)

    assert record.error is not None
    assert (record.error.code, record.error.message) == ("call_full", "call_full")
    changes = record.take_changes()
    assert [(h.status, h.code, h.ts) for h in changes.history] == [
        ("connecting", None, 101.0),
        ("failed", "call_full", 102.0),
    ]
    assert [e.data["status"] for e in changes.events] == ["connecting", "failed"]
    assert len({e.event_id for e in changes.events}) == 2
    assert record.take_changes().events == []


def test_a_free_text_failure_gets_the_bot_failed_code() -> None:
    record = make_record()
    record.feed_line(status("failed", "join refused: unauthorized"), now=101.0)

    assert record.view().error is not None
    assert record.view().error.code == "bot_failed"  # type: ignore[union-attr]


def test_a_snapshot_restores_what_the_view_shows() -> None:
    record = make_record()
    record.feed_line(status("connecting"), now=100.5)
    record.feed_line(status("in_call"), now=101.0)
    record.feed_line(
        b'{"type": "stats", "endpoint_id": "e1", "participants": ["bot-2"],'
        b' "tracks": [{"direction": "inbound", "kind": "video", "frames": 5}]}',
        now=102.0,
    )
    record.request_leave(now=103.0)

    copy = make_record()
    copy.restore(record.snapshot(), record.history)
    copy.status, copy.reason = record.status, record.reason

    assert copy.view().model_dump(exclude={"created_at", "updated_at"}) == (
        record.view().model_dump(exclude={"created_at", "updated_at"})
    )
    assert copy.leave_requested
    assert copy.first_frame_at == 102.0


def test_a_leave_rules_reason_stays_once_the_bot_has_left() -> None:
    record = make_record()
    record.feed_line(status("connecting"), now=100.5)
    record.feed_line(status("in_call"), now=101.0)
    record.request_leave(now=102.0, reason="max_duration")
    record.feed_line(status("leaving"), now=102.1)
    record.feed_line(status("left"), now=102.5)
    record.process_exited(0, now=103.0)

    view = record.view()
    assert (view.status, view.reason, view.error) == ("left", "max_duration", None)
    assert [(h.status, h.message) for h in view.history[-2:]] == [
        ("leaving", "max_duration"),
        ("left", "max_duration"),
    ]


def test_a_leave_asked_without_a_rule_says_left_on_request() -> None:
    record = make_record()
    record.feed_line(status("connecting"), now=100.5)
    record.feed_line(status("in_call"), now=101.0)
    record.request_leave(now=102.0)
    record.process_exited(0, now=103.0)

    assert (record.status, record.reason) == ("left", "left on request")


def test_a_recovery_reason_is_not_taken_for_why_the_bot_left() -> None:
    record = make_record()
    record.feed_line(status("connecting"), now=100.5)
    record.feed_line(status("in_call"), now=101.0)
    record.feed_line(status("connecting", "channel closed"), now=102.0)
    record.feed_line(status("in_call"), now=103.0)
    record.feed_line(status("leaving"), now=104.0)
    record.feed_line(status("left"), now=104.5)

    assert (record.status, record.reason) == ("left", None)


def test_a_failure_reported_without_a_reason_gets_one_then_the_exit_code() -> None:
    record = make_record()
    record.feed_line(status("connecting"), now=100.5)
    record.feed_line(status("failed"), now=101.0)

    assert record.reason == "the bot reported a failure without a reason"
    assert record.history[-1].message == record.reason
    assert record.error is not None and record.error.message == record.reason

    record.process_exited(2, now=102.0)
    assert record.reason == "worker exited with code 2"


def event(name: str, **fields: Any) -> bytes:
    return line({"type": "event", "event": name, **fields})


def test_event_summaries_keep_who_speaking_tier_fps_and_crashed() -> None:
    record = make_record()
    record.take_changes()
    record.feed_line(event("participant_joined", user_id="bot-1", ts=1.0), now=101.0)
    record.feed_line(event("participant_joined", user_id="bob", ts=2.0), now=101.0)
    record.feed_line(event("speaking", speaking=True, ts=3.0), now=101.0)
    record.feed_line(
        event("voice_activity", user_id="bob", track_id="a1", speaking=False, ts=4.0),
        now=101.0,
    )
    record.feed_line(
        event("video_settings", tier="viewer", fps=5, max_bitrate=100_000, ts=5.0),
        now=101.0,
    )
    record.feed_line(
        event("participant_left", user_id="bob", crashed=True, ts=6.0), now=101.0
    )

    summaries = [
        e.model_dump(exclude_none=True, exclude={"ts"}) for e in record.view().events
    ]
    assert summaries == [
        {"event": "self_joined", "user_id": "bot-1"},
        {"event": "participant_joined", "user_id": "bob"},
        {"event": "speaking", "user_id": "bot-1", "speaking": True},
        {
            "event": "voice_activity",
            "user_id": "bob",
            "speaking": False,
            "track_id": "a1",
        },
        {"event": "video_settings", "user_id": "bot-1", "tier": "viewer", "fps": 5},
        {"event": "participant_left", "user_id": "bob", "crashed": True},
    ]
    assert record.participants == []

    stored = [(e.type, e.data) for e in record.take_changes().events]
    assert stored[0] == ("self_joined", {"user_id": "bot-1", "ts": 1.0})
    assert stored[2] == ("speaking", {"speaking": True, "ts": 3.0, "user_id": "bot-1"})
    assert stored[4] == (
        "video_settings",
        {
            "tier": "viewer",
            "fps": 5,
            "max_bitrate": 100_000,
            "ts": 5.0,
            "user_id": "bot-1",
        },
    )
    assert stored[5][1]["crashed"] is True


def test_the_bots_own_join_does_not_make_it_a_participant() -> None:
    record = make_record()
    record.feed_line(event("participant_joined", user_id="bot-1"), now=101.0)

    assert record.participants == []
    assert record.events[0].event == "self_joined"


def test_event_summaries_saved_before_the_new_fields_still_restore() -> None:
    record = make_record()
    record.restore(
        {"events": [{"event": "participant_joined", "user_id": "bob", "ts": 1.0}]},
        record.history,
    )

    assert record.view().events[0].user_id == "bob"
    assert record.view().events[0].speaking is None


def test_log_lines_name_the_bot_its_user_and_room_in_the_users_terms(
    caplog: pytest.LogCaptureFixture,
) -> None:
    record = make_record()
    with caplog.at_level(logging.INFO, logger="api.record"):
        record.feed_line(status("connecting"), now=100.5)
        record.feed_line(status("in_call"), now=101.0)
        record.feed_line(event("voice_activity", user_id="bob", speaking=True), 101.0)
        record.feed_line(event("video_settings", tier="viewer", fps=5), now=101.0)
        record.feed_line(event("speaking", speaking=True), now=101.0)
        record.feed_line(event("participant_left", user_id="bob", crashed=True), 101.0)
        record.request_leave(now=102.0, reason="max_duration")

    assert [r.getMessage() for r in caplog.records] == [
        "bot b-1 (bot-1, room lobby): starting -> connecting",
        "bot b-1 (bot-1, room lobby): connecting -> in_call",
        "bot b-1 (bot-1, room lobby): bob is speaking",
        "bot b-1 (bot-1, room lobby): tier viewer, 5 fps",
        "bot b-1 (bot-1, room lobby): speaking",
        "bot b-1 (bot-1, room lobby): bob left the call (endpoint crashed)",
        "bot b-1 (bot-1, room lobby): in_call -> leaving (max_duration)",
    ]
    assert {(r.bot_id, r.user_id, r.room_id) for r in caplog.records} == {  # type: ignore[attr-defined]
        ("b-1", "bot-1", "lobby")
    }
