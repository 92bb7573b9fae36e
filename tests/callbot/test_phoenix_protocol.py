"""The sans-I/O Phoenix client core, on an injected clock."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from callbot.errors import ChannelError
from callbot.phoenix.frames import Message
from callbot.phoenix.protocol import (
    STABLE_AFTER,
    ChannelClosed,
    ChannelCore,
    ChannelErrored,
    ChannelState,
    ClientProtocol,
    Event,
    HeartbeatTimedOut,
    Joined,
    PushFailed,
    PushReplied,
    PushTimedOut,
    ReconnectDue,
    ReconnectScheduled,
    ServerPush,
    SocketState,
    default_backoff,
    default_rejoin,
)

TOPIC = "call:lobby"
PARAMS = {"user_id": "u-42", "user_info": {"name": "Bot 42"}}


def frames(p: ClientProtocol) -> list[Message]:
    return p.frames_to_send()


def events(p: ClientProtocol) -> list[Event]:
    return p.events_received()


def reply(
    join_ref: str | None,
    ref: str,
    topic: str = TOPIC,
    status: str = "ok",
    response: Any = None,
) -> str:
    payload = {"status": status, "response": {} if response is None else response}
    return Message(join_ref, ref, topic, "phx_reply", payload).encode()


def server(join_ref: str | None, event: str, payload: Any, topic: str = TOPIC) -> str:
    ref = join_ref if event in ("phx_error", "phx_close") else None
    return Message(join_ref, ref, topic, event, payload).encode()


def open_protocol(now: float = 0.0, **kwargs: Any) -> ClientProtocol:
    p = ClientProtocol(**kwargs)
    p.opened(now)
    return p


def joined_channel(
    p: ClientProtocol, now: float = 0.0, topic: str = TOPIC
) -> ChannelCore:
    channel = p.channel(topic, PARAMS)
    p.join(channel, now)
    (join,) = frames(p)
    p.receive(reply(join.ref, join.ref or "", topic), now)
    assert events(p) == [Joined(channel.id, topic, {}, rejoin=False)]
    return channel


# refs and join_refs


def test_join_frame_uses_its_ref_as_join_ref_and_sends_params() -> None:
    p = open_protocol()
    channel = p.channel(TOPIC, PARAMS)
    p.join(channel, 0.0)

    assert frames(p) == [Message("1", "1", TOPIC, "phx_join", PARAMS)]
    assert channel.state is ChannelState.JOINING
    assert channel.join_ref == "1"

    p.receive(reply("1", "1", response={"ice_servers": []}), 0.1)
    assert events(p) == [Joined(channel.id, TOPIC, {"ice_servers": []}, rejoin=False)]
    assert channel.state is ChannelState.JOINED


def test_one_ref_counter_per_socket_and_pushes_carry_the_join_ref() -> None:
    p = open_protocol()
    a = joined_channel(p, topic="room:a")
    b = joined_channel(p, topic="room:b")
    p.push(a, "x", {}, 0.0)
    p.push_nowait(b, "media_event", {"data": "{}"})
    p.leave(a, 0.0)

    assert [(f.join_ref, f.ref, f.topic, f.event) for f in frames(p)] == [
        ("1", "3", "room:a", "x"),
        ("2", "4", "room:b", "media_event"),
        ("1", "5", "room:a", "phx_leave"),
    ]


def test_push_nowait_on_a_channel_that_is_not_joined_sends_nothing() -> None:
    p = open_protocol()
    channel = p.channel(TOPIC, PARAMS)
    p.join(channel, 0.0)
    frames(p)

    assert p.push_nowait(channel, "media_event", {}) is False
    assert frames(p) == []
    assert p.pending_count == 0


def test_push_on_a_closed_channel_raises() -> None:
    p = open_protocol()
    channel = p.channel(TOPIC)
    with pytest.raises(ChannelError):
        p.push(channel, "x", {}, 0.0)


def test_joining_twice_raises() -> None:
    p = open_protocol()
    channel = joined_channel(p)
    with pytest.raises(ChannelError):
        p.join(channel, 0.0)


# replies and timeouts


def test_reply_is_matched_by_ref_not_by_order() -> None:
    p = open_protocol()
    channel = joined_channel(p)
    first = p.push(channel, "a", {}, 0.0)
    second = p.push(channel, "b", {}, 0.0)
    assert [f.ref for f in frames(p)] == ["2", "3"]

    p.receive(reply("1", "3", status="error", response={"reason": "not_in_call"}), 0.1)
    p.receive(reply("1", "2", response={"ok": 1}), 0.2)

    assert events(p) == [
        PushReplied(second, channel.id, TOPIC, "b", "error", {"reason": "not_in_call"}),
        PushReplied(first, channel.id, TOPIC, "a", "ok", {"ok": 1}),
    ]
    assert p.pending_count == 0


def test_timeout_fires_once_and_a_late_reply_leaves_nothing_behind() -> None:
    p = open_protocol()
    channel = joined_channel(p)
    push_id = p.push(channel, "silent", {}, 0.0)
    (frame,) = frames(p)
    assert p.next_deadline() == 10.0

    p.tick(9.999)
    assert events(p) == []
    p.tick(10.0)
    assert events(p) == [PushTimedOut(push_id, channel.id, TOPIC, "silent", 10.0)]
    p.tick(20.0)
    assert events(p) == []
    assert p.pending_count == 0

    p.receive(reply("1", frame.ref or ""), 25.0)
    assert events(p) == []
    assert frames(p) == []
    assert p.pending_count == 0


def test_per_push_timeout_overrides_the_default() -> None:
    p = open_protocol(push_timeout=10.0)
    channel = joined_channel(p)
    push_id = p.push(channel, "x", {}, 1.0, timeout=0.5)
    p.tick(1.5)
    assert events(p) == [PushTimedOut(push_id, channel.id, TOPIC, "x", 0.5)]


def test_fire_and_forget_replies_are_dropped_without_state() -> None:
    p = open_protocol()
    channel = joined_channel(p)
    p.push_nowait(channel, "media_event", {})
    (frame,) = frames(p)
    p.receive(reply("1", frame.ref or ""), 0.1)
    assert events(p) == []
    assert p.pending_count == 0
    assert p.next_deadline() == 30.0  # only the heartbeat


# outdated frames and server errors


def test_frames_with_another_join_ref_are_dropped_null_is_delivered() -> None:
    p = open_protocol()
    channel = joined_channel(p)

    p.receive(server("99", "participant_joined", {"user_id": "old"}), 0.0)
    p.receive(server("99", "phx_error", {}), 0.0)
    p.receive(server("99", "phx_close", {}), 0.0)
    assert events(p) == []
    assert channel.state is ChannelState.JOINED

    p.receive(server("1", "participant_joined", {"user_id": "a"}), 0.0)
    p.receive(server(None, "quality_tier_request", {"tier": "active"}), 0.0)
    assert events(p) == [
        ServerPush(channel.id, TOPIC, "participant_joined", {"user_id": "a"}),
        ServerPush(channel.id, TOPIC, "quality_tier_request", {"tier": "active"}),
    ]


def test_reply_with_an_outdated_join_ref_is_dropped() -> None:
    p = open_protocol()
    channel = joined_channel(p)
    p.push(channel, "x", {}, 0.0)
    (frame,) = frames(p)
    p.receive(reply("99", frame.ref or ""), 0.1)
    assert events(p) == []
    assert p.pending_count == 1


def test_phx_error_errors_the_channel_fails_its_pushes_and_rejoins() -> None:
    p = open_protocol()
    channel = joined_channel(p)
    push_id = p.push(channel, "join_call", {}, 0.0)
    frames(p)

    p.receive(server("1", "phx_error", {}), 1.0)
    assert channel.state is ChannelState.ERRORED
    assert events(p) == [
        PushFailed(push_id, channel.id, TOPIC, "join_call", "channel_errored"),
        ChannelErrored(channel.id, TOPIC, "phx_error"),
    ]
    assert p.pending_count == 0

    # Rejoin after 1 s, with a new join_ref and the original params.
    assert p.next_deadline() == 2.0
    p.tick(1.999)
    assert frames(p) == []
    p.tick(2.0)
    assert frames(p) == [Message("3", "3", TOPIC, "phx_join", PARAMS)]
    p.receive(reply("3", "3"), 2.1)
    assert events(p) == [Joined(channel.id, TOPIC, {}, rejoin=True)]
    assert channel.join_ref == "3"

    # The old instance's frames are now outdated.
    p.receive(server("1", "participant_joined", {}), 2.2)
    assert events(p) == []


def test_phx_close_closes_for_good() -> None:
    p = open_protocol()
    channel = joined_channel(p)
    p.receive(server("1", "phx_close", {}), 1.0)
    assert events(p) == [ChannelClosed(channel.id, TOPIC, "phx_close")]
    assert channel.state is ChannelState.CLOSED
    assert p.channels == []
    p.tick(100.0)
    assert [f.topic for f in frames(p)] == ["phoenix"]  # no rejoin


def test_refused_join_is_retried_on_the_rejoin_schedule() -> None:
    p = open_protocol(heartbeat_interval=1000.0)
    channel = p.channel(TOPIC, PARAMS)
    p.join(channel, 0.0)
    frames(p)

    now = 0.0
    delays = []
    for _ in range(5):
        ref = channel.join_ref or ""
        p.receive(
            reply(ref, ref, status="error", response={"reason": "call_full"}), now
        )
        assert events(p) == [
            ChannelErrored(channel.id, TOPIC, "join_refused", {"reason": "call_full"})
        ]
        deadline = p.next_deadline()
        assert deadline is not None
        delays.append(deadline - now)
        now = deadline
        p.tick(now)
        (rejoin,) = frames(p)
        assert rejoin.event == "phx_join"
        assert rejoin.payload == PARAMS
        assert rejoin.join_ref == rejoin.ref == channel.join_ref

    assert delays == [1.0, 2.0, 5.0, 10.0, 10.0]


def test_rejoin_tries_reset_after_a_successful_join() -> None:
    p = open_protocol(heartbeat_interval=1000.0)
    joined_channel(p)
    p.receive(server("1", "phx_error", {}), 0.0)
    p.tick(1.0)
    p.receive(reply("2", "2", status="error"), 1.0)  # refused: next in 2 s
    assert p.next_deadline() == 3.0
    p.tick(3.0)
    p.receive(reply("3", "3"), 3.0)
    events(p)
    p.receive(server("3", "phx_error", {}), 4.0)
    assert p.next_deadline() == 5.0


def test_join_timeout_leaves_the_attempt_then_rejoins() -> None:
    p = open_protocol(heartbeat_interval=1000.0)
    channel = p.channel(TOPIC, PARAMS)
    p.join(channel, 0.0, timeout=2.0)
    frames(p)

    p.tick(2.0)
    assert frames(p) == [Message("1", "2", TOPIC, "phx_leave", {})]
    assert events(p) == [ChannelErrored(channel.id, TOPIC, "join_timeout")]

    # The late join reply is not taken for the next attempt.
    p.receive(reply("1", "1"), 2.5)
    assert events(p) == []
    assert channel.state is ChannelState.ERRORED

    p.tick(3.0)
    assert frames(p) == [Message("3", "3", TOPIC, "phx_join", PARAMS)]


def test_unmatched_topic_reply_with_null_join_ref_refuses_the_join() -> None:
    p = open_protocol()
    channel = p.channel("nope:x")
    p.join(channel, 0.0)
    frames(p)
    p.receive(
        reply(
            None,
            "1",
            topic="nope:x",
            status="error",
            response={"reason": "unmatched topic"},
        ),
        0.1,
    )
    assert events(p) == [
        ChannelErrored(
            channel.id, "nope:x", "join_refused", {"reason": "unmatched topic"}
        )
    ]


# leave and duplicates


def test_leave_waits_for_the_reply_then_a_phx_close_is_ignored() -> None:
    p = open_protocol()
    channel = joined_channel(p)
    p.leave(channel, 0.0)
    assert frames(p) == [Message("1", "2", TOPIC, "phx_leave", {})]
    assert channel.state is ChannelState.LEAVING
    assert events(p) == []

    p.receive(reply("1", "2"), 0.1)
    assert events(p) == [ChannelClosed(channel.id, TOPIC, "left")]
    p.receive(server("1", "phx_close", {}), 0.1)
    assert events(p) == []


def test_leave_without_reply_closes_at_its_timeout() -> None:
    p = open_protocol()
    channel = joined_channel(p)
    p.leave(channel, 0.0, timeout=1.0)
    p.tick(1.0)
    assert events(p) == [ChannelClosed(channel.id, TOPIC, "left")]


def test_duplicate_join_of_a_topic_leaves_the_first_channel() -> None:
    p = open_protocol()
    first = joined_channel(p)
    second = p.channel(TOPIC, {"user_id": "other"})
    p.join(second, 0.0)
    assert frames(p) == [
        Message("1", "2", TOPIC, "phx_leave", {}),
        Message("3", "3", TOPIC, "phx_join", {"user_id": "other"}),
    ]
    assert first.state is ChannelState.LEAVING

    # The server closes the old instance; only the old channel sees it.
    p.receive(reply("1", "2"), 0.1)
    p.receive(server("1", "phx_close", {}), 0.1)
    p.receive(reply("3", "3"), 0.1)
    assert events(p) == [
        ChannelClosed(first.id, TOPIC, "left"),
        Joined(second.id, TOPIC, {}, rejoin=False),
    ]


# buffering


def test_pushes_before_the_join_reply_are_sent_after_it_in_order() -> None:
    p = open_protocol()
    channel = p.channel(TOPIC, PARAMS)
    p.join(channel, 0.0)
    frames(p)
    a = p.push(channel, "a", {"n": 1}, 0.0)
    b = p.push(channel, "b", {"n": 2}, 0.0)
    assert frames(p) == []

    p.receive(reply("1", "1"), 0.5)
    assert frames(p) == [
        Message("1", "2", TOPIC, "a", {"n": 1}),
        Message("1", "3", TOPIC, "b", {"n": 2}),
    ]
    p.receive(reply("1", "2"), 0.6)
    p.receive(reply("1", "3"), 0.6)
    replied = [e for e in events(p) if isinstance(e, PushReplied)]
    assert [e.push_id for e in replied] == [a, b]


def test_queued_push_whose_timeout_passed_is_never_sent() -> None:
    p = open_protocol(heartbeat_interval=1000.0)
    channel = p.channel(TOPIC, PARAMS)
    p.join(channel, 0.0, timeout=20.0)
    frames(p)
    stale = p.push(channel, "stale", {}, 0.0, timeout=1.0)
    fresh = p.push(channel, "fresh", {}, 0.5, timeout=10.0)

    p.tick(1.0)
    assert events(p) == [PushTimedOut(stale, channel.id, TOPIC, "stale", 1.0)]
    p.receive(reply("1", "1"), 2.0)
    assert [f.event for f in frames(p)] == ["fresh"]
    assert p.pending_count == 1
    assert fresh == stale + 1


def test_pushes_while_errored_wait_for_the_rejoin() -> None:
    p = open_protocol(heartbeat_interval=1000.0)
    channel = joined_channel(p)
    p.receive(server("1", "phx_error", {}), 0.0)
    events(p)
    p.push(channel, "join_call", {}, 0.5)
    assert frames(p) == []
    p.tick(1.0)
    assert frames(p) == [Message("2", "2", TOPIC, "phx_join", PARAMS)]
    p.receive(reply("2", "2"), 1.1)
    assert frames(p) == [Message("2", "3", TOPIC, "join_call", {})]


def test_join_before_the_socket_opens_is_sent_on_open() -> None:
    p = ClientProtocol()
    channel = p.channel(TOPIC, PARAMS)
    p.join(channel, 0.0)
    assert frames(p) == []
    p.opened(0.2)
    assert frames(p) == [Message("1", "1", TOPIC, "phx_join", PARAMS)]


# heartbeat


def test_heartbeat_every_interval_after_the_previous_reply() -> None:
    p = open_protocol(10.0)
    assert p.next_deadline() == 40.0
    p.tick(40.0)
    assert frames(p) == [Message(None, "1", "phoenix", "heartbeat", {})]
    assert p.next_deadline() == 70.0  # its timeout

    p.receive(reply(None, "1", topic="phoenix"), 41.5)
    assert p.next_deadline() == 71.5
    p.tick(71.5)
    assert frames(p) == [Message(None, "2", "phoenix", "heartbeat", {})]


def test_heartbeat_timeout_declares_the_socket_dead() -> None:
    p = open_protocol()
    channel = joined_channel(p)
    p.tick(30.0)
    frames(p)
    p.tick(59.999)
    assert events(p) == []

    p.tick(60.0)
    assert events(p) == [
        HeartbeatTimedOut(),
        ChannelErrored(channel.id, TOPIC, "socket_lost"),
        ReconnectScheduled(0.010, 1),
    ]
    assert p.state is SocketState.CLOSED
    assert channel.state is ChannelState.ERRORED

    # The owner's close of the dead websocket changes nothing more.
    p.connection_lost(60.1, clean=True)
    assert events(p) == []


# reconnect


def test_backoff_sequences_match_the_js_client() -> None:
    assert [default_backoff(t) for t in range(1, 12)] == [
        0.010,
        0.050,
        0.100,
        0.150,
        0.200,
        0.250,
        0.500,
        1.0,
        2.0,
        5.0,
        5.0,
    ]
    assert [default_rejoin(t) for t in range(1, 6)] == [1.0, 2.0, 5.0, 10.0, 10.0]


def test_reconnect_tries_follow_the_backoff_and_reset_after_a_stable_open() -> None:
    p = open_protocol()
    p.connection_lost(0.0, clean=False)
    now = 0.0
    delays = []
    for _ in range(10):
        (scheduled,) = events(p)
        assert isinstance(scheduled, ReconnectScheduled)
        delays.append(scheduled.delay)
        now += scheduled.delay
        p.tick(now)
        assert events(p) == [ReconnectDue(scheduled.tries)]
        p.connection_failed(now)
    assert delays == [0.010, 0.050, 0.100, 0.150, 0.200, 0.250, 0.500, 1.0, 2.0, 5.0]

    events(p)
    p.opened(now)
    p.connection_lost(now + STABLE_AFTER, clean=False)
    assert events(p) == [ReconnectScheduled(0.010, 1)]


def test_a_server_that_drops_every_connection_at_once_sees_growing_delays() -> None:
    # Accepted, then closed (1011) a few ms later, again and again.
    p = open_protocol()
    now = 0.0
    delays = []
    for _ in range(11):
        p.connection_lost(now + 0.002, clean=False)
        (scheduled,) = [e for e in events(p) if isinstance(e, ReconnectScheduled)]
        delays.append(scheduled.delay)
        now += 0.002 + scheduled.delay
        p.tick(now)
        events(p)
        p.opened(now)
    assert delays == [
        0.010, 0.050, 0.100, 0.150, 0.200, 0.250, 0.500, 1.0, 2.0, 5.0, 5.0
    ]  # fmt: skip


def test_a_joined_but_short_connection_does_not_reset_the_backoff() -> None:
    p = open_protocol()
    channel = joined_channel(p)
    p.connection_lost(0.1, clean=False)
    assert events(p)[-1] == ReconnectScheduled(0.010, 1)
    p.tick(0.2)
    p.opened(0.2)
    (join,) = frames(p)
    p.receive(reply(join.ref, join.ref or ""), 0.21)
    assert channel.state is ChannelState.JOINED
    p.connection_lost(0.3, clean=False)
    assert events(p)[-1] == ReconnectScheduled(0.050, 2)


def test_custom_backoff_is_used() -> None:
    p = open_protocol(reconnect_after=lambda tries: tries * 0.5)
    p.connection_lost(0.0, clean=False)
    p.tick(0.5)
    p.connection_failed(0.5)
    assert [e for e in events(p) if isinstance(e, ReconnectScheduled)] == [
        ReconnectScheduled(0.5, 1),
        ReconnectScheduled(1.0, 2),
    ]


def test_clean_close_does_not_reconnect() -> None:
    p = open_protocol()
    channel = joined_channel(p)
    p.connection_lost(1.0, clean=True)
    assert events(p) == [ChannelErrored(channel.id, TOPIC, "socket_lost")]
    assert p.next_deadline() is None


def test_socket_loss_fails_sent_pushes_and_keeps_queued_ones() -> None:
    p = open_protocol()
    channel = joined_channel(p)
    sent = p.push(channel, "sent", {}, 0.0)
    frames(p)
    p.connection_lost(1.0, clean=False)
    assert events(p) == [
        PushFailed(sent, channel.id, TOPIC, "sent", "socket_lost"),
        ChannelErrored(channel.id, TOPIC, "socket_lost"),
        ReconnectScheduled(0.010, 1),
    ]
    queued = p.push(channel, "queued", {}, 1.0)
    assert p.pending_count == 1

    p.tick(1.01)
    events(p)
    p.opened(1.02)
    (join,) = frames(p)
    p.receive(reply(join.ref, join.ref or ""), 1.03)
    assert frames(p) == [Message(join.ref, "4", TOPIC, "queued", {})]
    assert queued == sent + 1


def test_rejoin_on_reopen_is_immediate_with_new_join_refs_and_original_params() -> None:
    p = open_protocol()
    a = joined_channel(p, topic="room:a")
    b = joined_channel(p, topic="room:b")
    p.connection_lost(5.0, clean=False)
    events(p)
    assert frames(p) == []

    p.tick(5.01)
    assert events(p) == [ReconnectDue(1)]
    p.opened(5.02)
    assert frames(p) == [
        Message("3", "3", "room:a", "phx_join", PARAMS),
        Message("4", "4", "room:b", "phx_join", PARAMS),
    ]
    p.receive(reply("3", "3", topic="room:a", response={"again": True}), 5.1)
    assert events(p) == [Joined(a.id, "room:a", {"again": True}, rejoin=True)]
    assert b.state is ChannelState.JOINING


def test_leaving_channel_closes_when_the_socket_is_lost() -> None:
    p = open_protocol()
    channel = joined_channel(p)
    p.leave(channel, 0.0)
    frames(p)
    p.connection_lost(0.1, clean=False)
    assert events(p)[0] == ChannelClosed(channel.id, TOPIC, "left")


def test_close_ends_everything_and_never_reconnects() -> None:
    p = open_protocol()
    channel = joined_channel(p)
    sent = p.push(channel, "x", {}, 0.0)
    frames(p)
    p.close(1.0)
    assert events(p) == [
        PushFailed(sent, channel.id, TOPIC, "x", "socket_closed"),
        ChannelClosed(channel.id, TOPIC, "socket_closed"),
    ]
    p.connection_lost(1.1, clean=False)
    p.connection_failed(1.2)
    assert events(p) == []
    assert p.next_deadline() is None


def test_undecodable_frames_are_dropped() -> None:
    p = open_protocol()
    joined_channel(p)
    p.receive("garbage", 0.0)
    p.receive('["1"]', 0.0)
    assert events(p) == []


def test_deeply_nested_frame_is_one_short_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    p = open_protocol()
    channel = joined_channel(p)
    deep = "[" * 100_000 + "]" * 100_000
    with caplog.at_level(logging.DEBUG, logger="callbot.phoenix"):
        p.receive(deep, 0.0)
    (record,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert record.levelno == logging.WARNING
    assert "too deeply" in record.getMessage()
    assert len(record.getMessage()) < 400
    assert channel.state is ChannelState.JOINED
