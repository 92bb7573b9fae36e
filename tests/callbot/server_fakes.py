"""Test doubles for the reference server: an Engine and a PubSub recorder."""

from __future__ import annotations

import json
from typing import Any

from callbot.server.call_server import CallServer
from callbot.server.pubsub import Message
from callbot.server.settings import ServerSettings


class FakeEngine:
    """The Engine seam without media: records calls, answers ``connect``."""

    instances: list[FakeEngine] = []

    def __init__(
        self, room_id: str, settings: ServerSettings, listener: CallServer
    ) -> None:
        self.room_id = room_id
        self.listener = listener
        self.endpoints: list[str] = []
        self.removed: list[str] = []
        self.media_events: list[tuple[str, object]] = []
        self.closed = False
        FakeEngine.instances.append(self)

    def add_endpoint(self, endpoint_id: str) -> None:
        self.endpoints.append(endpoint_id)

    def remove_endpoint(self, endpoint_id: str) -> None:
        self.endpoints.remove(endpoint_id)
        self.removed.append(endpoint_id)

    def handle_media_event(self, endpoint_id: str, data: object) -> None:
        self.media_events.append((endpoint_id, data))
        if not isinstance(data, str):
            self.listener.on_endpoint_crashed(endpoint_id, "data is not a string")
            return
        event = json.loads(data)
        if event.get("type") == "connect":
            connected = {"type": "connected", "data": {"id": endpoint_id}}
            self.listener.on_media_event(endpoint_id, json.dumps(connected))
        elif event.get("type") == "disconnect":
            self.endpoints.remove(endpoint_id)
            self.listener.on_endpoint_removed(endpoint_id)

    def crash_endpoint(self, endpoint_id: str, reason: str) -> None:
        self.endpoints.remove(endpoint_id)
        self.listener.on_endpoint_crashed(endpoint_id, reason)

    def endpoint_stats(self, endpoint_id: str) -> dict[str, Any]:
        return {}

    async def close(self) -> None:
        self.closed = True


class Recorder:
    """A PubSub subscriber that keeps what it is sent, with no intercepts."""

    def __init__(self, intercepts: frozenset[str] = frozenset()) -> None:
        self._intercepts = intercepts
        self.messages: list[tuple[Message, bool]] = []

    @property
    def intercepts(self) -> frozenset[str]:
        return self._intercepts

    def deliver(self, message: Message, *, duplicate: bool) -> None:
        self.messages.append((message, duplicate))

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        return [(m.event, m.payload) for m, _ in self.messages]

    def clear(self) -> None:
        self.messages.clear()
