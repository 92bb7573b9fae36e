"""Phoenix Channels client on asyncio and ``websockets``.

A thin layer around :class:`callbot.phoenix.protocol.ClientProtocol`: one
reader and one writer task per connection, one timer task per socket, and
futures for the replies owners wait for. Every protocol decision lives in the
core.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from callbot.errors import ChannelError, PushTimeout, ReplyError, SocketClosed
from callbot.logtext import clip
from callbot.phoenix.frames import PHX_JOIN
from callbot.phoenix.protocol import (
    JOIN_REFUSED,
    JOIN_TIMEOUT,
    SOCKET_CLOSED,
    SOCKET_LOST,
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
    default_backoff,
    default_rejoin,
)

__all__ = ["Channel", "ChannelState", "Socket", "default_backoff", "default_rejoin"]

logger = logging.getLogger(__name__)

MessageHandler = Callable[[Any], object]
StateHandler = Callable[[ChannelState, dict[str, Any] | None], object]

# The real server has no frame size limit (phoenix-channels.md §8); snapshots
# reach tens of KB, a hostile relay may send far more. None: no limit.
DEFAULT_MAX_FRAME_SIZE = 64 * 2**20
# Close code websockets sends when it refuses a frame over max_size.
_MESSAGE_TOO_BIG = 1009
_CONNECT_ERRORS = (OSError, TimeoutError, WebSocketException)


def websocket_url(url: str, params: dict[str, str] | None = None) -> str:
    """``ws://host:port/socket`` → ``.../socket/websocket?vsn=2.0.0&<params>``."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    if not path.endswith("/websocket"):
        path += "/websocket"
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "vsn"]
    query.append(("vsn", "2.0.0"))
    query.extend((params or {}).items())
    return urlunsplit((parts.scheme, parts.netloc, path, urlencode(query), ""))


class Socket:
    """One Phoenix socket: connects, keeps the heartbeat, reconnects, rejoins."""

    def __init__(
        self,
        url: str,
        params: dict[str, str] | None = None,
        *,
        heartbeat_interval: float = 30.0,
        reconnect_after: Callable[[int], float] = default_backoff,
        push_timeout: float = 10.0,
        rejoin_after: Callable[[int], float] = default_rejoin,
        max_frame_size: int | None = DEFAULT_MAX_FRAME_SIZE,
        reconnect_after_server_close: bool = True,
    ) -> None:
        """Args:
        max_frame_size: bytes of the largest frame accepted; a larger one
            drops the connection (which then reconnects). None: no limit.
        reconnect_after_server_close: reconnect also when the server closes
            with code 1000. The JS client stays down then; a bot must not.
        """
        self.url = websocket_url(url, params)
        self.max_frame_size = max_frame_size
        self.reconnect_after_server_close = reconnect_after_server_close
        # The query may hold a token: logs show only the address.
        self._log_url = urlunsplit(urlsplit(self.url)._replace(query=""))
        self._core = ClientProtocol(
            heartbeat_interval=heartbeat_interval,
            push_timeout=push_timeout,
            reconnect_after=reconnect_after,
            rejoin_after=rejoin_after,
        )
        self._channels: dict[int, Channel] = {}
        self._push_waiters: dict[int, asyncio.Future[Any]] = {}

        self._ws: ClientConnection | None = None
        self._outbox: asyncio.Queue[str | None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._readers: set[asyncio.Task[None]] = set()
        self._timer: asyncio.Task[None] | None = None
        self._reconnecting: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._wake = asyncio.Event()
        self._flushing = False
        self._closing = False

    @property
    def connected(self) -> bool:
        return self._ws is not None

    @property
    def protocol(self) -> ClientProtocol:
        """The sans-I/O core (read it; drive it only through this socket)."""
        return self._core

    async def connect(self) -> None:
        """Open the first connection.

        Raises:
            SocketClosed: the server could not be reached or refused the upgrade.
        """
        if self._ws is not None:
            return
        self._closing = False
        try:
            ws = await self._open()
        except _CONNECT_ERRORS as exc:
            raise SocketClosed(f"cannot connect to {self._log_url}: {exc}") from exc
        logger.info("connected to %s", self._log_url)
        self._attach(ws)
        if self._timer is None:
            self._timer = asyncio.create_task(self._run_timer())

    def channel(self, topic: str, params: dict[str, Any] | None = None) -> Channel:
        """A channel object for ``topic``, joined with ``params`` on join()."""
        channel = Channel(self, self._core.channel(topic, params))
        self._channels[channel.core.id] = channel
        return channel

    async def close(self) -> None:
        """Close cleanly: channels end, waiting pushes fail, no reconnect."""
        self._closing = True
        self._core.close(self._now())
        self._flush()

        for task in (self._timer, self._reconnecting):
            if task is not None:
                task.cancel()
        self._timer = self._reconnecting = None

        ws = self._ws
        if ws is not None:
            await self._detach(ws, drain=True)
            await ws.close()
        await asyncio.gather(*self._readers, return_exceptions=True)
        logger.info("closed %s", self._log_url)

    # connection

    async def _open(self) -> ClientConnection:
        # No Origin header (the server then skips its origin check), no
        # compression (the server has it off), no websocket pings: the Phoenix
        # heartbeat is the liveness check, as in the browser.
        return await ws_connect(
            self.url,
            compression=None,
            ping_interval=None,
            max_size=self.max_frame_size,
            open_timeout=self._core.push_timeout,
        )

    def _attach(self, ws: ClientConnection) -> None:
        self._ws = ws
        outbox: asyncio.Queue[str | None] = asyncio.Queue()
        self._outbox = outbox
        self._writer = asyncio.create_task(self._write(ws, outbox))
        reader = asyncio.create_task(self._read(ws))
        self._readers.add(reader)
        reader.add_done_callback(self._readers.discard)
        self._core.opened(self._now())
        self._flush()

    async def _detach(self, ws: ClientConnection, *, drain: bool = False) -> None:
        """Stop writing to ``ws``; with ``drain``, let queued frames out first."""
        if self._ws is ws:
            self._ws = None
        writer, outbox = self._writer, self._outbox
        self._writer = self._outbox = None
        if writer is None or outbox is None:
            return
        if drain:
            outbox.put_nowait(None)
            try:
                await asyncio.wait_for(asyncio.shield(writer), timeout=1.0)
            except TimeoutError:
                logger.warning("dropping unsent frames on close")
        writer.cancel()

    async def _write(
        self, ws: ClientConnection, outbox: asyncio.Queue[str | None]
    ) -> None:
        try:
            while (text := await outbox.get()) is not None:
                await ws.send(text)
        except ConnectionClosed:
            pass

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for data in ws:
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug("< %s", clip(data))
                try:
                    self._core.receive(data, self._now())
                    self._flush()
                except Exception:
                    logger.exception("failed to handle < %s", clip(data))
        except ConnectionClosed:
            pass
        if self._ws is not ws:
            return  # closed on purpose (close() or a heartbeat timeout)

        code = ws.close_code
        clean = self._closing or (
            code == 1000 and not self.reconnect_after_server_close
        )
        sent = ws.protocol.close_sent
        if sent is not None and sent.code == _MESSAGE_TOO_BIG:
            logger.warning(
                "connection to %s dropped: the server sent a frame larger than"
                " the limit of %s bytes, which was refused",
                self._log_url,
                self.max_frame_size,
            )
        else:
            logger.info(
                "connection to %s lost (code %s, %s)",
                self._log_url,
                code,
                "clean" if clean else "will reconnect",
            )
        await self._detach(ws)
        self._core.connection_lost(self._now(), clean=clean)
        self._flush()

    async def _reconnect(self) -> None:
        try:
            ws = await self._open()
        except _CONNECT_ERRORS as exc:
            logger.info("reconnect to %s failed: %s", self._log_url, exc)
            self._core.connection_failed(self._now())
            self._flush()
            return
        finally:
            self._reconnecting = None
        if self._closing:
            await ws.close()
            return
        logger.info("reconnected to %s", self._log_url)
        self._attach(ws)

    def _drop_connection(self, reason: str) -> None:
        """Close the current websocket after the core already wrote it off."""
        ws = self._ws
        if ws is None:
            return
        self._ws = None
        if self._writer is not None:
            self._writer.cancel()
        self._writer = self._outbox = None
        self._spawn(ws.close(1000, reason))

    # the core's clock and output

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    async def _run_timer(self) -> None:
        while True:
            self._wake.clear()
            deadline = self._core.next_deadline()
            delay = None if deadline is None else max(0.0, deadline - self._now())
            try:
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            except TimeoutError:
                pass
            try:
                self._core.tick(self._now())
                self._flush()
            except Exception:
                logger.exception("timer step failed on %s", self._log_url)

    def _flush(self) -> None:
        """Write the core's frames and hand its events to their owners."""
        if self._flushing:
            return  # a handler called back into us; the outer loop drains
        self._flushing = True
        try:
            while True:
                frames = self._core.frames_to_send()
                events = self._core.events_received()
                if not frames and not events:
                    break
                for frame in frames:
                    text = frame.encode()
                    if self._outbox is None:
                        logger.debug("not connected, dropping > %s", clip(text))
                        continue
                    if logger.isEnabledFor(logging.DEBUG):
                        logger.debug("> %s", clip(text))
                    self._outbox.put_nowait(text)
                for event in events:
                    self._dispatch(event)
        finally:
            self._flushing = False
        self._wake.set()

    def _dispatch(self, event: Event) -> None:
        match event:
            case ServerPush() | Joined() | ChannelErrored() | ChannelClosed():
                channel = self._channels.get(event.channel_id)
                if channel is not None:
                    channel._handle(event)
            case PushReplied():
                if event.status == "ok":
                    self._resolve(event.push_id, event.response)
                else:
                    refusal = ReplyError(event.topic, event.event, event.response)
                    self._resolve(event.push_id, error=refusal)
            case PushTimedOut():
                timeout = PushTimeout(event.topic, event.event, event.timeout)
                self._resolve(event.push_id, error=timeout)
            case PushFailed():
                failure = _failure(event.topic, event.event, event.reason)
                self._resolve(event.push_id, error=failure)
            case HeartbeatTimedOut():
                logger.warning("heartbeat timeout on %s", self._log_url)
                self._drop_connection("heartbeat timeout")
            case ReconnectScheduled():
                logger.info(
                    "reconnecting to %s in %.3f s (try %d)",
                    self._log_url,
                    event.delay,
                    event.tries,
                )
            case ReconnectDue():
                if self._reconnecting is None and not self._closing:
                    self._reconnecting = asyncio.create_task(self._reconnect())

    def _resolve(
        self, push_id: int, result: Any = None, *, error: Exception | None = None
    ) -> None:
        waiter = self._push_waiters.pop(push_id, None)
        if waiter is None or waiter.done():
            return
        if error is not None:
            waiter.set_exception(error)
        else:
            waiter.set_result(result)

    def _spawn(self, awaitable: Awaitable[Any]) -> None:
        async def run() -> None:
            await awaitable

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.error("background task failed", exc_info=exc)


class Channel:
    """One channel on a :class:`Socket`; rejoins by itself after errors."""

    def __init__(self, socket: Socket, core: ChannelCore) -> None:
        self._socket = socket
        self.core = core
        self._handlers: dict[str, list[MessageHandler]] = {}
        self._state_handlers: list[StateHandler] = []
        self._join_waiter: asyncio.Future[Any] | None = None
        self._leave_waiter: asyncio.Future[None] | None = None

    @property
    def topic(self) -> str:
        return self.core.topic

    @property
    def state(self) -> ChannelState:
        return self.core.state

    @property
    def join_ref(self) -> str | None:
        return self.core.join_ref

    def __repr__(self) -> str:
        return f"<Channel {self.topic} {self.state} join_ref={self.join_ref}>"

    async def join(self, timeout: float | None = None) -> Any:
        """Join and return the join reply's response.

        A refused or timed-out join still leaves the channel retrying on the
        rejoin schedule, as the JS client does, until :meth:`leave`.

        Raises:
            ReplyError: the server refused the join (``.reason`` as sent).
            PushTimeout: no join reply within ``timeout``.
            SocketClosed: the socket is closed, or was lost before the reply.
            ChannelError: the channel is already joined or joining.
        """
        socket = self._socket
        if socket._timer is None:
            raise SocketClosed(f"cannot join {self.topic}: socket not connected")
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        socket._core.join(self.core, socket._now(), timeout)
        self._join_waiter = waiter
        logger.info("joining %s", self.topic)
        socket._flush()
        try:
            return await waiter
        finally:
            if self._join_waiter is waiter:
                self._join_waiter = None

    async def push(self, event: str, payload: Any, timeout: float | None = None) -> Any:
        """Push ``event`` and return the reply's response.

        Raises:
            ReplyError: the reply had ``status: "error"``.
            PushTimeout: no reply within ``timeout`` (default: the socket's).
            SocketClosed: the socket was lost or closed before the reply.
            ChannelError: the channel is closed, leaving, or errored meanwhile.
        """
        socket = self._socket
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        push_id = socket._core.push(self.core, event, payload, socket._now(), timeout)
        socket._push_waiters[push_id] = waiter
        socket._flush()
        try:
            return await waiter
        finally:
            socket._push_waiters.pop(push_id, None)

    def push_nowait(self, event: str, payload: Any) -> None:
        """Send an event the server never answers; dropped if not joined."""
        socket = self._socket
        if socket._core.push_nowait(self.core, event, payload):
            socket._flush()
        else:
            logger.debug("%s not joined, dropping %s", self.topic, event)

    def on(self, event: str, handler: MessageHandler) -> None:
        """Call ``handler(payload)`` for every ``event`` the server pushes."""
        self._handlers.setdefault(event, []).append(handler)

    def on_state(self, handler: StateHandler) -> None:
        """Call ``handler(state, info)`` on joined, errored and closed.

        ``info`` is the join response for joined (also after every rejoin),
        ``{"reason": ..., "response": ...}`` for errored (reasons
        ``phx_error``, ``join_refused``, ``join_timeout``, ``socket_lost``)
        and ``{"reason": ...}`` for closed (``phx_close``, ``left``,
        ``socket_closed``).
        """
        self._state_handlers.append(handler)

    async def leave(self, timeout: float | None = None) -> None:
        """Leave; returns when the server confirmed or the timeout passed."""
        if self.core.state is ChannelState.CLOSED:
            return
        waiter = self._leave_waiter
        if waiter is None or waiter.done():
            socket = self._socket
            waiter = asyncio.get_running_loop().create_future()
            self._leave_waiter = waiter
            socket._core.leave(self.core, socket._now(), timeout)
            socket._flush()
        await asyncio.shield(waiter)

    def _handle(
        self, event: ServerPush | Joined | ChannelErrored | ChannelClosed
    ) -> None:
        match event:
            case ServerPush():
                for handler in list(self._handlers.get(event.event, ())):
                    self._call(handler, event.event, event.payload)
            case Joined():
                logger.info(
                    "%s %s", "rejoined" if event.rejoin else "joined", self.topic
                )
                self._settle_join(result=event.response)
                self._tell(ChannelState.JOINED, event.response)
            case ChannelErrored():
                logger.info("%s errored (%s)", self.topic, event.reason)
                self._settle_join(error=self._join_failure(event))
                info = {"reason": event.reason, "response": event.response}
                self._tell(ChannelState.ERRORED, info)
            case ChannelClosed():
                logger.info("%s closed (%s)", self.topic, event.reason)
                error = _failure(self.topic, PHX_JOIN, event.reason)
                self._settle_join(error=error)
                if self._leave_waiter is not None and not self._leave_waiter.done():
                    self._leave_waiter.set_result(None)
                self._leave_waiter = None
                self._tell(ChannelState.CLOSED, {"reason": event.reason})

    def _join_failure(self, event: ChannelErrored) -> Exception:
        if event.reason == JOIN_REFUSED:
            return ReplyError(self.topic, PHX_JOIN, event.response)
        if event.reason == JOIN_TIMEOUT:
            return PushTimeout(self.topic, PHX_JOIN, self.core.join_timeout)
        return _failure(self.topic, PHX_JOIN, event.reason)

    def _settle_join(self, result: Any = None, error: Exception | None = None) -> None:
        waiter = self._join_waiter
        if waiter is None or waiter.done():
            return
        if error is not None:
            waiter.set_exception(error)
        else:
            waiter.set_result(result)

    def _tell(self, state: ChannelState, info: dict[str, Any] | None) -> None:
        for handler in list(self._state_handlers):
            self._call(handler, f"state {state}", state, info)

    def _call(self, handler: Callable[..., object], what: str, *args: Any) -> None:
        # A failing handler is the owner's bug; the reader must keep going.
        try:
            result = handler(*args)
        except Exception:
            logger.exception("handler for %s on %s failed", what, self.topic)
            return
        if inspect.isawaitable(result):
            self._socket._spawn(self._guard(result, what))

    async def _guard(self, awaitable: Awaitable[Any], what: str) -> None:
        try:
            await awaitable
        except Exception:
            logger.exception("handler for %s on %s failed", what, self.topic)


def _failure(topic: str, event: str, reason: str) -> Exception:
    """The exception for a push or join that can no longer be answered."""
    if reason in (SOCKET_LOST, SOCKET_CLOSED):
        return SocketClosed(f"{event} on {topic}: {reason.replace('_', ' ')}")
    return ChannelError(f"{event} on {topic}: {reason.replace('_', ' ')}")
