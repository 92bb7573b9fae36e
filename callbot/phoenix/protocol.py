"""Sans-I/O Phoenix Channels client core.

:class:`ClientProtocol` holds everything a Phoenix socket client decides: refs
and join_refs, channel states, reply matching with deadlines, the heartbeat,
the reconnect backoff and the channel rejoin schedule. It owns no socket, task
or clock: the owner feeds it received text with :meth:`ClientProtocol.receive`,
tells it about the connection (:meth:`~ClientProtocol.opened`,
:meth:`~ClientProtocol.connection_lost`, :meth:`~ClientProtocol.connection_failed`),
calls :meth:`~ClientProtocol.tick` at :meth:`~ClientProtocol.next_deadline`, and
drains :meth:`~ClientProtocol.frames_to_send` and
:meth:`~ClientProtocol.events_received` after every call. Time is always passed
in as ``now`` (float seconds, any monotonic origin).

The rules follow the official Phoenix 1.8.5 JS client (see
``shared/protocol/phoenix-channels.md``), with one difference: nothing is
written while the websocket is closed. Joins and pushes wait at the channel
level instead, so no socket-level send buffer is needed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from callbot.errors import ChannelError, FrameError
from callbot.logtext import clip
from callbot.phoenix.frames import (
    HEARTBEAT,
    PHOENIX_TOPIC,
    PHX_CLOSE,
    PHX_ERROR,
    PHX_JOIN,
    PHX_LEAVE,
    PHX_REPLY,
    Message,
    decode,
)

logger = logging.getLogger(__name__)

_RECONNECT_STEPS = (0.010, 0.050, 0.100, 0.150, 0.200, 0.250, 0.500, 1.0, 2.0)
_REJOIN_STEPS = (1.0, 2.0, 5.0)
# A connection that stayed open this long was a good one: the next loss starts
# the reconnect backoff from its first step again.
STABLE_AFTER = 5.0


def default_backoff(tries: int) -> float:
    """Delay before reconnect try ``tries`` (1-based), as the JS client waits."""
    if 1 <= tries <= len(_RECONNECT_STEPS):
        return _RECONNECT_STEPS[tries - 1]
    return 5.0


def default_rejoin(tries: int) -> float:
    """Delay before channel rejoin try ``tries`` (1-based), as the JS client waits."""
    if 1 <= tries <= len(_REJOIN_STEPS):
        return _REJOIN_STEPS[tries - 1]
    return 10.0


class ChannelState(StrEnum):
    CLOSED = "closed"
    JOINING = "joining"
    JOINED = "joined"
    ERRORED = "errored"
    LEAVING = "leaving"


class SocketState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"


# Why a channel errored (ChannelErrored.reason).
PHX_ERROR_REASON = "phx_error"
JOIN_REFUSED = "join_refused"
JOIN_TIMEOUT = "join_timeout"
SOCKET_LOST = "socket_lost"

# Why a channel closed (ChannelClosed.reason).
PHX_CLOSE_REASON = "phx_close"
LEFT = "left"
SOCKET_CLOSED = "socket_closed"

# Why a push that was sent or queued will never be answered (PushFailed.reason).
CHANNEL_ERRORED = "channel_errored"
CHANNEL_CLOSED = "channel_closed"


@dataclass(frozen=True, slots=True)
class Joined:
    """The join (or a rejoin) of a channel was answered ``ok``."""

    channel_id: int
    topic: str
    response: Any
    rejoin: bool


@dataclass(frozen=True, slots=True)
class ChannelErrored:
    """The channel lost its server process or could not join; it will rejoin."""

    channel_id: int
    topic: str
    reason: str
    response: Any = None


@dataclass(frozen=True, slots=True)
class ChannelClosed:
    """The channel ended for good (server close, leave, socket closed)."""

    channel_id: int
    topic: str
    reason: str


@dataclass(frozen=True, slots=True)
class ServerPush:
    """A message the server pushed or broadcast to the channel."""

    channel_id: int
    topic: str
    event: str
    payload: Any


@dataclass(frozen=True, slots=True)
class PushReplied:
    """The reply to a push; ``status`` is ``"ok"`` or ``"error"``."""

    push_id: int
    channel_id: int
    topic: str
    event: str
    status: str
    response: Any


@dataclass(frozen=True, slots=True)
class PushTimedOut:
    """No reply came within the push's timeout; a later reply is dropped."""

    push_id: int
    channel_id: int
    topic: str
    event: str
    timeout: float


@dataclass(frozen=True, slots=True)
class PushFailed:
    """The push can no longer be answered (socket or channel went away)."""

    push_id: int
    channel_id: int
    topic: str
    event: str
    reason: str


@dataclass(frozen=True, slots=True)
class HeartbeatTimedOut:
    """No heartbeat reply within the interval: the owner must close the socket."""


@dataclass(frozen=True, slots=True)
class ReconnectScheduled:
    """A reconnect try is due in ``delay`` seconds."""

    delay: float
    tries: int


@dataclass(frozen=True, slots=True)
class ReconnectDue:
    """The owner should open a new connection now."""

    tries: int


Event = (
    Joined
    | ChannelErrored
    | ChannelClosed
    | ServerPush
    | PushReplied
    | PushTimedOut
    | PushFailed
    | HeartbeatTimedOut
    | ReconnectScheduled
    | ReconnectDue
)


@dataclass(slots=True)
class _Push:
    id: int
    channel: ChannelCore
    event: str
    payload: Any
    timeout: float
    deadline: float
    ref: str | None = None


class ChannelCore:
    """The protocol state of one channel object; changed only by its protocol."""

    def __init__(self, channel_id: int, topic: str, params: dict[str, Any]) -> None:
        self.id = channel_id
        self.topic = topic
        self.params = params
        self.state = ChannelState.CLOSED
        self.join_ref: str | None = None
        self.join_timeout = 0.0
        self.join_deadline: float | None = None
        self.leave_ref: str | None = None
        self.leave_deadline: float | None = None
        self.rejoin_at: float | None = None
        self.rejoin_tries = 0
        self.joined_once = False
        self.buffer: list[_Push] = []

    def __repr__(self) -> str:
        return f"<ChannelCore {self.topic} {self.state} join_ref={self.join_ref}>"


@dataclass(slots=True)
class _Heartbeat:
    ref: str | None = None
    sent_at: float = 0.0
    due_at: float | None = None


@dataclass(slots=True)
class _Reconnect:
    tries: int = 0
    at: float | None = None


@dataclass(slots=True)
class _Output:
    frames: list[Message] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


class ClientProtocol:
    """The state of one Phoenix socket client and all of its channels."""

    def __init__(
        self,
        *,
        heartbeat_interval: float = 30.0,
        push_timeout: float = 10.0,
        reconnect_after: Callable[[int], float] = default_backoff,
        rejoin_after: Callable[[int], float] = default_rejoin,
        stable_after: float = STABLE_AFTER,
    ) -> None:
        """Args:
        stable_after: seconds a connection must stay open before its loss
            restarts the reconnect backoff; a server that accepts and drops
            connections at once sees ever longer delays.
        """
        self.heartbeat_interval = heartbeat_interval
        self.stable_after = stable_after
        self.push_timeout = push_timeout
        self.reconnect_after = reconnect_after
        self.rejoin_after = rejoin_after
        self.state = SocketState.CLOSED

        self._ref = 0
        self._push_ids = 0
        self._channel_ids = 0
        # Channels that are joining, joined, errored or leaving, in join order.
        self._channels: dict[int, ChannelCore] = {}
        # Pushes sent on the current connection and waiting for a reply, by ref.
        self._pending: dict[str, _Push] = {}
        self._heartbeat = _Heartbeat()
        self._reconnect = _Reconnect()
        self._opened_at: float | None = None
        self._stopped = False
        self._out = _Output()

    # output

    def frames_to_send(self) -> list[Message]:
        """Frames to write, in order, since the previous call."""
        frames, self._out.frames = self._out.frames, []
        return frames

    def events_received(self) -> list[Event]:
        """Events for the owner, in order, since the previous call."""
        events, self._out.events = self._out.events, []
        return events

    # introspection

    @property
    def pending_count(self) -> int:
        """Pushes waiting for a reply, sent or queued (for tests and stats)."""
        queued = sum(len(channel.buffer) for channel in self._channels.values())
        return len(self._pending) + queued

    @property
    def channels(self) -> list[ChannelCore]:
        """Channels that are not closed."""
        return list(self._channels.values())

    def next_deadline(self) -> float | None:
        """When :meth:`tick` has something to do next, or None."""
        times: list[float] = []
        if self.state is SocketState.OPEN:
            if self._heartbeat.ref is not None:
                times.append(self._heartbeat.sent_at + self.heartbeat_interval)
            elif self._heartbeat.due_at is not None:
                times.append(self._heartbeat.due_at)
        if self._reconnect.at is not None:
            times.append(self._reconnect.at)
        for channel in self._channels.values():
            for when in (
                channel.join_deadline,
                channel.leave_deadline,
                channel.rejoin_at,
            ):
                if when is not None:
                    times.append(when)
            times.extend(push.deadline for push in channel.buffer)
        times.extend(push.deadline for push in self._pending.values())
        return min(times, default=None)

    # connection lifecycle

    def opened(self, now: float) -> None:
        """The websocket is open: start the heartbeat and (re)join channels."""
        self.state = SocketState.OPEN
        self._stopped = False
        # The try count survives until the connection proves stable (_lose).
        self._reconnect.at = None
        self._opened_at = now
        self._heartbeat = _Heartbeat(due_at=now + self.heartbeat_interval)
        for channel in list(self._channels.values()):
            # Errored channels rejoin at once; joining ones were waiting for
            # the socket (a connection loss turns sent joins into errors).
            if channel.state in (ChannelState.ERRORED, ChannelState.JOINING):
                channel.rejoin_at = None
                self._send_join(channel, now)

    def connection_lost(self, now: float, *, clean: bool) -> None:
        """The open websocket closed; ``clean``: user close or code 1000."""
        if self.state is not SocketState.OPEN:
            return
        self._lose(now, reconnect=not clean and not self._stopped)

    def connection_failed(self, now: float) -> None:
        """A reconnect try did not open a websocket."""
        if self.state is SocketState.OPEN or self._stopped:
            return
        self._schedule_reconnect(now)

    def close(self, now: float) -> None:
        """Close on purpose: end every channel, never reconnect."""
        self._stopped = True
        self._reconnect = _Reconnect()
        was_open = self.state is SocketState.OPEN
        self.state = SocketState.CLOSED
        self._heartbeat = _Heartbeat()
        if was_open:
            self._fail_pending(SOCKET_CLOSED)
        for channel in list(self._channels.values()):
            self._close(channel, SOCKET_CLOSED)

    # channels

    def channel(self, topic: str, params: dict[str, Any] | None = None) -> ChannelCore:
        """A new channel object for ``topic``; it joins on :meth:`join`."""
        self._channel_ids += 1
        return ChannelCore(self._channel_ids, topic, dict(params or {}))

    def join(
        self, channel: ChannelCore, now: float, timeout: float | None = None
    ) -> None:
        """Join ``channel``; the join is sent now or when the socket opens.

        Raises:
            ChannelError: the channel is not closed.
        """
        if channel.state is not ChannelState.CLOSED:
            raise ChannelError(f"{channel.topic} is already {channel.state}")

        # One channel instance per topic and socket, as the JS client keeps it.
        for other in list(self._channels.values()):
            if other.topic == channel.topic and other.state in (
                ChannelState.JOINED,
                ChannelState.JOINING,
            ):
                logger.info("leaving duplicate channel %s before joining", other.topic)
                self.leave(other, now)

        self._channels[channel.id] = channel
        channel.state = ChannelState.JOINING
        channel.join_ref = None
        channel.joined_once = False
        channel.rejoin_tries = 0
        channel.join_timeout = self.push_timeout if timeout is None else timeout
        channel.join_deadline = now + channel.join_timeout
        if self.state is SocketState.OPEN:
            self._send_join(channel, now)

    def push(
        self,
        channel: ChannelCore,
        event: str,
        payload: Any,
        now: float,
        timeout: float | None = None,
    ) -> int:
        """Push ``event``, waiting for a reply; returns the push id of its events.

        A push on a channel that is not joined yet is queued and sent after the
        join reply, unless its timeout passes first.

        Raises:
            ChannelError: the channel is closed or leaving.
        """
        if channel.state in (ChannelState.CLOSED, ChannelState.LEAVING):
            raise ChannelError(
                f"cannot push {event} on {channel.topic}: {channel.state}"
            )
        self._push_ids += 1
        timeout = self.push_timeout if timeout is None else timeout
        push = _Push(self._push_ids, channel, event, payload, timeout, now + timeout)
        if self._can_push(channel):
            self._send_push(push)
        else:
            channel.buffer.append(push)
        return push.id

    def push_nowait(self, channel: ChannelCore, event: str, payload: Any) -> bool:
        """Send an event no reply is expected to; False (not sent) if not joined."""
        if not self._can_push(channel):
            return False
        self._emit(
            Message(channel.join_ref, self._next_ref(), channel.topic, event, payload)
        )
        return True

    def leave(
        self, channel: ChannelCore, now: float, timeout: float | None = None
    ) -> None:
        """Leave ``channel``; it closes on the leave reply or its timeout."""
        if channel.state in (ChannelState.CLOSED, ChannelState.LEAVING):
            return
        channel.rejoin_at = None
        channel.join_deadline = None
        sent_join = self.state is SocketState.OPEN and channel.join_ref is not None
        if sent_join and channel.state is ChannelState.JOINED:
            channel.state = ChannelState.LEAVING
            channel.leave_ref = self._send_leave(channel)
            timeout = self.push_timeout if timeout is None else timeout
            channel.leave_deadline = now + timeout
            return
        if sent_join and channel.state is ChannelState.JOINING:
            # The join may still succeed on the server; the leave undoes it.
            self._send_leave(channel)
        self._close(channel, LEFT)

    # input

    def receive(self, text: str | bytes, now: float) -> None:
        """Handle one received text frame."""
        try:
            message = decode(text)
        except FrameError as exc:
            logger.warning("dropping undecodable frame (%s): %s", exc, clip(text))
            return

        if message.topic == PHOENIX_TOPIC:
            self._receive_heartbeat_reply(message, now)
        elif message.event == PHX_REPLY and message.ref is not None:
            self._receive_reply(message, now)
        else:
            self._receive_channel_message(message, now)

    def tick(self, now: float) -> None:
        """Run every timer that is due at ``now``."""
        self._tick_heartbeat(now)

        if self._reconnect.at is not None and now >= self._reconnect.at:
            self._reconnect.at = None
            self._out.events.append(ReconnectDue(self._reconnect.tries))

        for channel in list(self._channels.values()):
            self._tick_channel(channel, now)

        expired = [ref for ref, push in self._pending.items() if now >= push.deadline]
        for ref in expired:
            self._time_out(self._pending.pop(ref))

    # internals: sending

    def _next_ref(self) -> str:
        self._ref += 1
        return str(self._ref)

    def _emit(self, message: Message) -> None:
        self._out.frames.append(message)

    def _can_push(self, channel: ChannelCore) -> bool:
        return self.state is SocketState.OPEN and channel.state is ChannelState.JOINED

    def _send_join(self, channel: ChannelCore, now: float) -> None:
        ref = self._next_ref()
        channel.state = ChannelState.JOINING
        channel.join_ref = ref
        channel.join_deadline = now + channel.join_timeout
        self._emit(Message(ref, ref, channel.topic, PHX_JOIN, dict(channel.params)))

    def _send_leave(self, channel: ChannelCore) -> str:
        ref = self._next_ref()
        self._emit(Message(channel.join_ref, ref, channel.topic, PHX_LEAVE, {}))
        return ref

    def _send_push(self, push: _Push) -> None:
        push.ref = self._next_ref()
        self._pending[push.ref] = push
        channel = push.channel
        self._emit(
            Message(channel.join_ref, push.ref, channel.topic, push.event, push.payload)
        )

    # internals: receiving

    def _receive_heartbeat_reply(self, message: Message, now: float) -> None:
        if message.event == PHX_REPLY and message.ref == self._heartbeat.ref:
            self._heartbeat = _Heartbeat(due_at=now + self.heartbeat_interval)
        else:
            logger.debug(
                "dropping %s on %s (ref %s)",
                clip(message.event),
                clip(message.topic),
                clip(message.ref),
            )

    def _receive_reply(self, message: Message, now: float) -> None:
        status, response = _reply_parts(message.payload)

        push = self._pending.get(message.ref or "")
        if push is not None and push.channel.topic == message.topic:
            if self._outdated(message, push.channel):
                return
            del self._pending[push.ref or ""]
            self._out.events.append(
                PushReplied(
                    push.id,
                    push.channel.id,
                    push.channel.topic,
                    push.event,
                    status,
                    response,
                )
            )
            return

        for channel in list(self._channels.values()):
            if channel.topic != message.topic or self._outdated(message, channel):
                continue
            if (
                channel.state is ChannelState.JOINING
                and message.ref == channel.join_ref
            ):
                self._join_replied(channel, status, response, now)
                return
            if (
                channel.state is ChannelState.LEAVING
                and message.ref == channel.leave_ref
            ):
                self._close(channel, LEFT)
                return

        # A reply after its push timed out, or to a fire-and-forget event.
        logger.debug(
            "dropping reply to unknown ref %s on %s",
            clip(message.ref),
            clip(message.topic),
        )

    def _receive_channel_message(self, message: Message, now: float) -> None:
        delivered = False
        for channel in list(self._channels.values()):
            if channel.topic != message.topic or self._outdated(message, channel):
                continue
            delivered = True
            if message.event == PHX_ERROR:
                self._error(channel, now, PHX_ERROR_REASON)
            elif message.event == PHX_CLOSE:
                self._close(channel, PHX_CLOSE_REASON)
            else:
                self._out.events.append(
                    ServerPush(
                        channel.id, channel.topic, message.event, message.payload
                    )
                )
        if not delivered:
            logger.debug(
                "dropping %s for %s: no channel",
                clip(message.event),
                clip(message.topic),
            )

    def _outdated(self, message: Message, channel: ChannelCore) -> bool:
        if message.join_ref is None or message.join_ref == channel.join_ref:
            return False
        logger.debug(
            "dropping outdated %s on %s: join_ref %s, current %s",
            clip(message.event),
            clip(message.topic),
            clip(message.join_ref),
            channel.join_ref,
        )
        return True

    def _join_replied(
        self, channel: ChannelCore, status: str, response: Any, now: float
    ) -> None:
        channel.join_deadline = None
        if status != "ok":
            self._error(channel, now, JOIN_REFUSED, response)
            return

        channel.state = ChannelState.JOINED
        channel.rejoin_tries = 0
        channel.rejoin_at = None
        self._out.events.append(
            Joined(channel.id, channel.topic, response, channel.joined_once)
        )
        channel.joined_once = True

        queued, channel.buffer = channel.buffer, []
        for push in queued:
            if now >= push.deadline:
                self._time_out(push)
            else:
                self._send_push(push)

    # internals: timers

    def _tick_heartbeat(self, now: float) -> None:
        if self.state is not SocketState.OPEN:
            return
        beat = self._heartbeat
        if beat.ref is not None:
            if now >= beat.sent_at + self.heartbeat_interval:
                logger.warning(
                    "no heartbeat reply within %g s", self.heartbeat_interval
                )
                self._out.events.append(HeartbeatTimedOut())
                self._lose(now, reconnect=True)
        elif beat.due_at is not None and now >= beat.due_at:
            beat.ref = self._next_ref()
            beat.sent_at = now
            beat.due_at = None
            self._emit(Message(None, beat.ref, PHOENIX_TOPIC, HEARTBEAT, {}))

    def _tick_channel(self, channel: ChannelCore, now: float) -> None:
        if channel.join_deadline is not None and now >= channel.join_deadline:
            channel.join_deadline = None
            if self.state is SocketState.OPEN and channel.join_ref is not None:
                # As the JS client does: undo the attempt before retrying.
                self._send_leave(channel)
            self._error(channel, now, JOIN_TIMEOUT)
        if channel.leave_deadline is not None and now >= channel.leave_deadline:
            self._close(channel, LEFT)
            return
        if channel.rejoin_at is not None and now >= channel.rejoin_at:
            channel.rejoin_at = None
            # Without a socket the rejoin waits for opened(), which rejoins at once.
            if self.state is SocketState.OPEN and channel.state is ChannelState.ERRORED:
                self._send_join(channel, now)

        expired = [push for push in channel.buffer if now >= push.deadline]
        for push in expired:
            channel.buffer.remove(push)
            self._time_out(push)

    # internals: state changes

    def _lose(self, now: float, *, reconnect: bool) -> None:
        opened_at, self._opened_at = self._opened_at, None
        if opened_at is not None and now - opened_at >= self.stable_after:
            self._reconnect.tries = 0
        self.state = SocketState.CLOSED
        self._heartbeat = _Heartbeat()
        self._fail_pending(SOCKET_LOST)
        for channel in list(self._channels.values()):
            if channel.state is ChannelState.LEAVING:
                # The server ends the channel with the connection.
                self._close(channel, LEFT)
            else:
                self._error(channel, now, SOCKET_LOST)
        if reconnect:
            self._schedule_reconnect(now)

    def _schedule_reconnect(self, now: float) -> None:
        self._reconnect.tries += 1
        delay = self.reconnect_after(self._reconnect.tries)
        self._reconnect.at = now + delay
        self._out.events.append(ReconnectScheduled(delay, self._reconnect.tries))

    def _error(
        self, channel: ChannelCore, now: float, reason: str, response: Any = None
    ) -> None:
        if channel.state in (
            ChannelState.CLOSED,
            ChannelState.LEAVING,
            ChannelState.ERRORED,
        ):
            return
        channel.state = ChannelState.ERRORED
        channel.join_deadline = None
        self._fail_pending(
            CHANNEL_ERRORED if reason != SOCKET_LOST else SOCKET_LOST, channel
        )
        self._out.events.append(
            ChannelErrored(channel.id, channel.topic, reason, response)
        )
        if self.state is SocketState.OPEN:
            channel.rejoin_tries += 1
            channel.rejoin_at = now + self.rejoin_after(channel.rejoin_tries)

    def _close(self, channel: ChannelCore, reason: str) -> None:
        if channel.state is ChannelState.CLOSED:
            return
        channel.state = ChannelState.CLOSED
        channel.join_deadline = None
        channel.leave_deadline = None
        channel.leave_ref = None
        channel.rejoin_at = None
        self._fail_pending(CHANNEL_CLOSED, channel)
        queued, channel.buffer = channel.buffer, []
        for push in queued:
            self._fail(push, CHANNEL_CLOSED)
        self._channels.pop(channel.id, None)
        self._out.events.append(ChannelClosed(channel.id, channel.topic, reason))

    def _fail_pending(self, reason: str, channel: ChannelCore | None = None) -> None:
        refs = [
            ref
            for ref, push in self._pending.items()
            if channel is None or push.channel is channel
        ]
        for ref in refs:
            self._fail(self._pending.pop(ref), reason)

    def _fail(self, push: _Push, reason: str) -> None:
        self._out.events.append(
            PushFailed(push.id, push.channel.id, push.channel.topic, push.event, reason)
        )

    def _time_out(self, push: _Push) -> None:
        self._out.events.append(
            PushTimedOut(
                push.id, push.channel.id, push.channel.topic, push.event, push.timeout
            )
        )


def _reply_parts(payload: Any) -> tuple[str, Any]:
    """``(status, response)`` of a phx_reply payload; odd payloads are errors."""
    if not isinstance(payload, dict):
        return "error", {"reason": "malformed reply"}
    status = payload.get("status")
    return (status if isinstance(status, str) else "error"), payload.get("response", {})
