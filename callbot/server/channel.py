"""A channel process: one (socket, topic) pair with its mailbox and lifecycle.

Everything a channel does runs in its own asyncio task, one mailbox item at
a time, as an Erlang process does: client frames routed by the socket,
PubSub deliveries and control requests. A handler that raises kills only
this channel: ``terminate`` runs and the socket sends ``phx_error``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

from callbot.phoenix.frames import PHX_REPLY, Message
from callbot.server.pubsub import Broadcast, PubSub, ServerEvent
from callbot.server.pubsub import Message as PubSubMessage

logger = logging.getLogger(__name__)


class ExitReason(Enum):
    """How a channel process ended; decides ``phx_close`` or ``phx_error``."""

    LEFT = "left"  # phx_leave or {:stop, ...}: phx_close
    CRASHED = "crashed"  # an exception: phx_error
    DUPLICATE_JOIN = "duplicate_join"  # killed by the socket
    CLOSED = "closed"  # the websocket went away


class Transport(Protocol):
    """What a channel needs from the socket it lives on."""

    def send(self, message: Message) -> None:
        """Queue one frame to the client, in order."""

    def send_broadcast(self, broadcast: Broadcast) -> None:
        """Fastlane: a broadcast encoded straight to the client."""

    def channel_exited(self, channel: Channel, reason: ExitReason) -> None:
        """The channel process ended by itself (left or crashed)."""


@dataclass(frozen=True)
class Reply:
    """``{:reply, {status, response}, socket}``."""

    status: str
    response: dict[str, Any]

    @classmethod
    def ok(cls, response: dict[str, Any] | None = None) -> Reply:
        return cls("ok", response or {})

    @classmethod
    def error(cls, reason: str) -> Reply:
        return cls("error", {"reason": reason})


@dataclass(frozen=True)
class BinaryPayload:
    """A V2 binary push's payload (``{:binary, bytes}`` on the server)."""

    data: bytes


class JoinRefused(Exception):
    """``{:error, reply}`` from ``join/3``."""

    def __init__(self, response: dict[str, Any]) -> None:
        super().__init__(response)
        self.response = response


class ChannelCrash(Exception):
    """Raised by a handler where Elixir would have no matching clause."""


@dataclass(frozen=True)
class _Inbound:
    ref: str | None
    event: str
    payload: Any


@dataclass(frozen=True)
class _Leave:
    ref: str | None


@dataclass(frozen=True)
class _Delivery:
    message: PubSubMessage
    duplicate: bool


@dataclass(frozen=True)
class _Crash:
    reason: str


_MailboxItem = _Inbound | _Leave | _Delivery | _Crash


class Channel(ABC):
    """Base of every channel kind; subclasses implement the Phoenix callbacks."""

    intercepts: frozenset[str] = frozenset()

    def __init__(
        self, topic: str, join_ref: str | None, transport: Transport, pubsub: PubSub
    ) -> None:
        self.topic = topic
        self.join_ref = join_ref
        self.transport = transport
        self.pubsub = pubsub
        self._mailbox: asyncio.Queue[_MailboxItem] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.alive = True

    # -- callbacks ---------------------------------------------------------

    @abstractmethod
    def join(self, params: Any) -> dict[str, Any]:
        """Return the join reply's response, or raise :class:`JoinRefused`."""

    @abstractmethod
    def handle_in(self, event: str, payload: Any) -> Reply | None:
        """A client event; ``None`` is ``noreply``."""

    def handle_out(self, event: str, payload: dict[str, Any]) -> None:
        """An intercepted (or raw) broadcast; Phoenix has no default clause."""
        raise ChannelCrash(f"no handle_out clause for {event!r}")

    def handle_info(self, event: ServerEvent) -> None:
        """A plain PubSub message; the default pushes it as is."""
        self.push(event.event, event.payload)

    def terminate(self, reason: ExitReason) -> None:  # noqa: B027
        """Runs on every exit, crashes included."""

    # -- what a channel can do ----------------------------------------------

    def push(self, event: str, payload: dict[str, Any]) -> None:
        """``push/3``: a frame with this channel's join_ref and a null ref."""
        self.transport.send(Message(self.join_ref, None, self.topic, event, payload))

    def broadcast(self, event: str, payload: dict[str, Any]) -> None:
        """``broadcast!/3`` on this channel's topic."""
        self.pubsub.broadcast(Broadcast(self.topic, event, payload))

    def broadcast_from(self, event: str, payload: dict[str, Any]) -> None:
        """``broadcast_from!/3``: every subscriber but this process."""
        self.pubsub.broadcast(Broadcast(self.topic, event, payload), exclude=self)

    # -- process plumbing, used by the socket and by PubSub ------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"channel {self.topic}"
        )

    def deliver(self, message: PubSubMessage, *, duplicate: bool) -> None:
        if self.alive:
            self._mailbox.put_nowait(_Delivery(message, duplicate))

    def receive(self, ref: str | None, event: str, payload: Any) -> None:
        """A client frame routed here by the socket."""
        self._mailbox.put_nowait(_Inbound(ref, event, payload))

    def leave(self, ref: str | None) -> None:
        self._mailbox.put_nowait(_Leave(ref))

    def crash(self, reason: str = "crashed by test control") -> None:
        """Make the process die as if a handler had raised."""
        self._mailbox.put_nowait(_Crash(reason))

    def shutdown(self, reason: ExitReason) -> None:
        """Kill from outside (duplicate join, socket closed); terminate runs."""
        if not self.alive:
            return
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        self._exit(reason, notify=False)

    async def wait_closed(self) -> None:
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while self.alive:
            item = await self._mailbox.get()
            try:
                stop = self._handle(item)
            except Exception:
                logger.warning("channel %s crashed", self.topic, exc_info=True)
                self._exit(ExitReason.CRASHED, notify=True)
                return
            if stop:
                self._exit(ExitReason.LEFT, notify=True)
                return

    def _handle(self, item: _MailboxItem) -> bool:
        if isinstance(item, _Inbound):
            reply = self.handle_in(item.event, item.payload)
            if reply is not None:
                self._reply(item.ref, reply)
            return False
        if isinstance(item, _Leave):
            self._reply(item.ref, Reply.ok())
            return True
        if isinstance(item, _Crash):
            raise ChannelCrash(item.reason)
        message = item.message
        if isinstance(message, Broadcast):
            self.handle_out(message.event, message.payload)
        else:
            self.handle_info(message)
        return False

    def _reply(self, ref: str | None, reply: Reply) -> None:
        payload = {"status": reply.status, "response": reply.response}
        self.transport.send(Message(self.join_ref, ref, self.topic, PHX_REPLY, payload))

    def _exit(self, reason: ExitReason, *, notify: bool) -> None:
        self.alive = False
        self.pubsub.unsubscribe_all(self)
        try:
            self.terminate(reason)
        except Exception:
            logger.warning("terminate of %s raised", self.topic, exc_info=True)
        if notify:
            self.transport.channel_exited(self, reason)
