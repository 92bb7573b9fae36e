"""The server side of one user-socket websocket (phoenix-channels.md).

``ws://HOST:PORT/socket/websocket?vsn=2.0.0``: V2 JSON arrays (V1 objects
without ``vsn`` or with ``vsn=1.0.0``), heartbeat replies, topic routing to
channel factories, join_ref checks, duplicate joins, leave, crash and close
frames, the 60 s idle timeout.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from callbot.errors import FrameError, FrameTooDeep
from callbot.logtext import clip
from callbot.phoenix import frames
from callbot.phoenix.frames import (
    HEARTBEAT,
    PHOENIX_TOPIC,
    PHX_CLOSE,
    PHX_ERROR,
    PHX_JOIN,
    PHX_LEAVE,
    PHX_REPLY,
    Message,
)
from callbot.server.channel import (
    BinaryPayload,
    Channel,
    ExitReason,
    JoinRefused,
)
from callbot.server.clock import Clock, Timer
from callbot.server.pubsub import Broadcast, PubSub

logger = logging.getLogger(__name__)

SOCKET_PATH = "/socket/websocket"
IDLE_CLOSE_CODE = 1002  # Bandit closes an idle websocket with 1002
CRASH_CLOSE_CODE = 1011  # an exception in the socket process

ChannelFactory = Callable[[str, str | None, Any, PubSub], Channel]


# -- serializers -------------------------------------------------------------


class Serializer(Protocol):
    version: str

    def decode(self, raw: str | bytes) -> Message: ...
    def encode(self, message: Message) -> str: ...


class V2Serializer:
    """``[join_ref, ref, topic, event, payload]``, and binary pushes."""

    version = "2.0.0"

    def decode(self, raw: str | bytes) -> Message:
        if isinstance(raw, bytes):
            return _decode_binary_push(raw)
        return frames.decode(raw)

    def encode(self, message: Message) -> str:
        return message.encode()


class V1Serializer:
    """``{topic, event, payload, ref}`` objects; the server never sends join_ref."""

    version = "1.0.0"

    def decode(self, raw: str | bytes) -> Message:
        if isinstance(raw, bytes):
            raise FrameError("V1 has no binary frames")
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise FrameError(f"frame is not JSON: {exc.msg}") from exc
        except RecursionError as exc:
            raise FrameTooDeep("frame nests JSON too deeply to decode") from exc
        if not isinstance(data, dict) or any(
            k not in data for k in ("topic", "event", "payload", "ref")
        ):
            raise FrameError("V1 frame lacks topic, event, payload or ref")
        topic, event, ref = data["topic"], data["event"], data["ref"]
        join_ref = data.get("join_ref")
        if not isinstance(topic, str) or not isinstance(event, str):
            raise FrameError("topic and event must be strings")
        for value in (ref, join_ref):
            if value is not None and not isinstance(value, str):
                raise FrameError("refs must be strings or null")
        return Message(join_ref, ref, topic, event, data["payload"])

    def encode(self, message: Message) -> str:
        return json.dumps(
            {
                "topic": message.topic,
                "event": message.event,
                "payload": message.payload,
                "ref": message.ref,
            },
            separators=(",", ":"),
        )


def _decode_binary_push(data: bytes) -> Message:
    if len(data) < 5 or data[0] != 0:
        raise FrameError("binary frame is not a push")
    sizes = data[1:5]
    pos = 5
    fields: list[str] = []
    for size in sizes:
        chunk = data[pos : pos + size]
        if len(chunk) != size:
            raise FrameError("binary frame is truncated")
        try:
            fields.append(chunk.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise FrameError("binary frame header is not UTF-8") from exc
        pos += size
    join_ref, ref, topic, event = fields
    return Message(join_ref, ref, topic, event, BinaryPayload(data[pos:]))


_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")


def serializer_for(vsn: str | None) -> Serializer | None:
    """Phoenix's choice: absent → V1, ``~> 1.0.0`` → V1, ``~> 2.0.0`` → V2."""
    if vsn is None:
        return V1Serializer()
    match = _VERSION.match(vsn)
    if match is None:
        return None
    major, minor = int(match.group(1)), int(match.group(2))
    if (major, minor) == (1, 0):
        return V1Serializer()
    if (major, minor) == (2, 0):
        return V2Serializer()
    return None


# -- the upgrade request ------------------------------------------------------


@dataclass(frozen=True)
class SocketParams:
    serializer: Serializer
    params: dict[str, str]


def check_upgrade(
    connection: ServerConnection, request: Request, allowed_hosts: set[str]
) -> Response | None:
    """websockets' ``process_request``: 404 off the mount, 403 as Phoenix refuses."""
    url = urlsplit(request.path)
    if url.path.rstrip("/") != SOCKET_PATH:
        return connection.respond(HTTPStatus.NOT_FOUND, "")
    query = parse_qs(url.query, keep_blank_values=True)
    vsn = query.get("vsn", [None])[-1]
    if serializer_for(vsn) is None:
        logger.info("refused websocket: unknown vsn %r", vsn)
        return connection.respond(HTTPStatus.FORBIDDEN, "")
    origin = request.headers.get("Origin")
    if origin is not None and urlsplit(origin).hostname not in allowed_hosts:
        logger.info("refused websocket: origin %s", origin)
        return connection.respond(HTTPStatus.FORBIDDEN, "")
    return None


def socket_params(request: Request) -> SocketParams:
    query = parse_qs(urlsplit(request.path).query, keep_blank_values=True)
    params = {key: values[-1] for key, values in query.items()}
    serializer = serializer_for(params.get("vsn"))
    assert serializer is not None  # checked by check_upgrade
    return SocketParams(serializer, params)


# -- routing ---------------------------------------------------------------------


class TopicRouter:
    """``channel "call:*", CallChannel`` lines: prefix → factory, first match wins."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, ChannelFactory]] = []

    def route(self, prefix: str, factory: ChannelFactory) -> None:
        self._routes.append((prefix, factory))

    def match(self, topic: str) -> ChannelFactory | None:
        for prefix, factory in self._routes:
            if topic.startswith(prefix):
                return factory
        return None


# -- one websocket -------------------------------------------------------------


class UserSocket:
    """One websocket and the channel processes on it."""

    def __init__(
        self,
        websocket: ServerConnection,
        serializer: Serializer,
        *,
        router: TopicRouter,
        pubsub: PubSub,
        clock: Clock,
        strict_join_ref: bool = True,
        idle_timeout_ms: int = 60_000,
    ) -> None:
        self.websocket = websocket
        self.serializer = serializer
        self.router = router
        self.pubsub = pubsub
        self.clock = clock
        self.strict_join_ref = strict_join_ref
        self.idle_timeout_ms = idle_timeout_ms
        self.channels: dict[str, Channel] = {}
        # The connect params (``token`` names the socket's user).
        self.params: dict[str, str] = {}
        self._outbox: asyncio.Queue[str | None] = asyncio.Queue()
        self._idle: Timer | None = None
        self._closing: asyncio.Task[None] | None = None
        self.closed = False
        self.name = f"{websocket.remote_address}"

    async def run(self) -> None:
        """Serve until the websocket closes; every channel then terminates."""
        writer = asyncio.get_running_loop().create_task(self._write())
        self._arm_idle()
        try:
            async for raw in self.websocket:
                self._arm_idle()
                try:
                    message = self.serializer.decode(raw)
                except FrameTooDeep as exc:
                    # Known limit: Phoenix decodes any depth and would answer
                    # this frame; Python's decoder cannot, so only it is lost.
                    logger.warning(
                        "socket %s: frame dropped (%s): %s",
                        self.name,
                        exc,
                        clip(raw),
                    )
                    continue
                except FrameError as exc:
                    logger.warning(
                        "socket %s: malformed frame (%s): %s", self.name, exc, clip(raw)
                    )
                    await self.websocket.close(CRASH_CLOSE_CODE)
                    break
                self._dispatch(message)
        except ConnectionClosed:
            pass
        finally:
            self.closed = True
            if self._idle is not None:
                self._idle.cancel()
            for channel in list(self.channels.values()):
                channel.shutdown(ExitReason.CLOSED)
            self.channels.clear()
            self._outbox.put_nowait(None)
            await writer
            if self._closing is not None:
                await self._closing

    # -- Transport --------------------------------------------------------------

    def send(self, message: Message) -> None:
        if self.closed:
            return
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "socket %s > %s %s %s",
                self.name,
                clip(message.topic),
                clip(message.event),
                clip(message.payload),
            )
        self._outbox.put_nowait(self.serializer.encode(message))

    def send_broadcast(self, broadcast: Broadcast) -> None:
        self.send(
            Message(None, None, broadcast.topic, broadcast.event, broadcast.payload)
        )

    def channel_exited(self, channel: Channel, reason: ExitReason) -> None:
        if self.channels.get(channel.topic) is not channel:
            return
        del self.channels[channel.topic]
        event = PHX_ERROR if reason is ExitReason.CRASHED else PHX_CLOSE
        self.send(Message(channel.join_ref, channel.join_ref, channel.topic, event, {}))

    # -- inbound ----------------------------------------------------------------

    def _dispatch(self, message: Message) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "socket %s < %s %s ref=%s join_ref=%s",
                self.name,
                clip(message.topic),
                clip(message.event),
                clip(message.ref),
                message.join_ref,
            )
        if message.topic == PHOENIX_TOPIC and message.event == HEARTBEAT:
            self._reply(None, message, "ok", {})
            return

        channel = self.channels.get(message.topic)
        if message.event == PHX_JOIN:
            if channel is not None:
                self._kill_duplicate(channel)
            self._join(message)
            return
        if channel is None:
            if message.event == PHX_LEAVE:
                self._reply(message.join_ref, message, "ok", {})
            else:
                self._reply(None, message, "error", {"reason": "unmatched topic"})
            return
        if not self._join_ref_matches(channel, message.join_ref):
            logger.debug(
                "socket %s: dropped %s on %s: join_ref %r is not %r",
                self.name,
                message.event,
                message.topic,
                message.join_ref,
                channel.join_ref,
            )
            return
        if message.event == PHX_LEAVE:
            channel.leave(message.ref)
        else:
            channel.receive(message.ref, message.event, message.payload)

    def _join(self, message: Message) -> None:
        factory = self.router.match(message.topic)
        if factory is None:
            self._reply(None, message, "error", {"reason": "unmatched topic"})
            return
        channel = factory(message.topic, message.join_ref, self, self.pubsub)
        try:
            response = channel.join(message.payload)
        except JoinRefused as refused:
            self.pubsub.unsubscribe_all(channel)
            logger.info(
                "socket %s: join %s refused: %s",
                self.name,
                clip(message.topic),
                clip(refused.response),
            )
            self._reply(message.join_ref, message, "error", refused.response)
            return
        except Exception:
            self.pubsub.unsubscribe_all(channel)
            logger.warning(
                "socket %s: join %s crashed",
                self.name,
                clip(message.topic),
                exc_info=True,
            )
            self._reply(message.join_ref, message, "error", {"reason": "join crashed"})
            return
        self.channels[message.topic] = channel
        self.pubsub.subscribe(message.topic, channel, fastlane=self.send_broadcast)
        self._reply(message.join_ref, message, "ok", response)
        channel.start()

    def _kill_duplicate(self, channel: Channel) -> None:
        logger.info("socket %s: duplicate join of %s", self.name, clip(channel.topic))
        del self.channels[channel.topic]
        channel.shutdown(ExitReason.DUPLICATE_JOIN)
        self.send(
            Message(channel.join_ref, channel.join_ref, channel.topic, PHX_CLOSE, {})
        )

    def _join_ref_matches(self, channel: Channel, join_ref: str | None) -> bool:
        # V1 joins carry no join_ref and are never checked.
        if channel.join_ref is None or join_ref == channel.join_ref:
            return True
        # Phoenix 1.8.5 drops null too; a later upstream commit accepts it.
        return join_ref is None and not self.strict_join_ref

    def _reply(
        self, join_ref: str | None, message: Message, status: str, response: Any
    ) -> None:
        payload = {"status": status, "response": response}
        self.send(Message(join_ref, message.ref, message.topic, PHX_REPLY, payload))

    # -- outbound and timers ------------------------------------------------------

    async def _write(self) -> None:
        while True:
            text = await self._outbox.get()
            if text is None:
                return
            try:
                await self.websocket.send(text)
            except ConnectionClosed:
                return

    def _arm_idle(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self._idle = self.clock.call_later(self.idle_timeout_ms, self._idle_fired)

    def _idle_fired(self) -> None:
        self._idle = None
        if self.closed or self._closing is not None:
            return
        logger.info(
            "socket %s: no frame for %d ms, closing", self.name, self.idle_timeout_ms
        )
        self._closing = asyncio.get_running_loop().create_task(
            self.websocket.close(IDLE_CLOSE_CODE)
        )
