"""The call supervisor: one CallServer per room, started lazily, restarted.

The real CallServer's child spec is ``:permanent``, so every stop (the
inactivity stop included) is followed by a fresh server with an empty table.
"""

from __future__ import annotations

import asyncio
import logging

from callbot.server.call_server import (
    CallServer,
    EngineFactory,
    default_engine_factory,
)
from callbot.server.clock import Clock
from callbot.server.pubsub import PubSub
from callbot.server.settings import ServerSettings

logger = logging.getLogger(__name__)


class Calls:
    """Rooms → running CallServer."""

    def __init__(
        self,
        settings: ServerSettings,
        clock: Clock,
        pubsub: PubSub,
        engine_factory: EngineFactory = default_engine_factory,
        received_candidates: list[str] | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.pubsub = pubsub
        self.engine_factory = engine_factory
        self.received_candidates = (
            received_candidates if received_candidates is not None else []
        )
        self._servers: dict[str, CallServer] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._shutting_down = False

    def get(self, room_id: str) -> CallServer | None:
        return self._servers.get(room_id)

    def ensure(self, room_id: str) -> CallServer:
        """The room's CallServer, started if none runs."""
        server = self._servers.get(room_id)
        if server is None:
            server = self._start(room_id)
        return server

    def participant_count(self, room_id: str) -> int:
        """In-call participants; 0 when no CallServer runs."""
        server = self._servers.get(room_id)
        return len(server.participants) if server else 0

    def rooms(self) -> list[str]:
        return sorted(self._servers)

    async def close(self) -> None:
        """Stop every call without restarting it and wait for the engines."""
        self._shutting_down = True
        for server in list(self._servers.values()):
            server.stop("shutdown")
        self._servers.clear()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    def _start(self, room_id: str) -> CallServer:
        server = CallServer(
            room_id,
            settings=self.settings,
            clock=self.clock,
            pubsub=self.pubsub,
            engine_factory=self.engine_factory,
            on_stop=self._stopped,
            received_candidates=self.received_candidates,
        )
        self._servers[room_id] = server
        return server

    def _stopped(self, server: CallServer, reason: str) -> None:
        if server.closing is not None:
            self._closing.add(server.closing)
            server.closing.add_done_callback(self._closing.discard)
        if self._shutting_down or self._servers.get(server.room_id) is not server:
            return
        logger.info("restarting the call of room %s (%s)", server.room_id, reason)
        self._start(server.room_id)
