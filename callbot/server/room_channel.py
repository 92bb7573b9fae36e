"""``room:{room_uuid}``: a room's sensors and members (sensor-streams.md §3.2)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from callbot.server.channel import Channel, JoinRefused, Reply, Transport
from callbot.server.pubsub import PubSub, ServerEvent
from callbot.server.rooms import RoomStore
from callbot.server.sensors import SensorRegistry

logger = logging.getLogger(__name__)

TOPIC_PREFIX = "room:"


def canonical_room_id(text: str) -> str | None:
    """The lowercase UUID form of ``text``, or None if it is not a UUID."""
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


class RoomChannel(Channel):
    """One socket watching one room's sensors."""

    def __init__(
        self,
        topic: str,
        join_ref: str | None,
        transport: Transport,
        pubsub: PubSub,
        *,
        registry: SensorRegistry,
        rooms: RoomStore,
        user_id: str,
    ) -> None:
        super().__init__(topic, join_ref, transport, pubsub)
        self.registry = registry
        self.rooms = rooms
        self.user_id = user_id
        self.room_id = ""

    def join(self, params: Any) -> dict[str, Any]:
        suffix = self.topic[len(TOPIC_PREFIX) :]
        room_id = canonical_room_id(suffix)
        if room_id is None or len(suffix) != 36:
            raise JoinRefused({"reason": "invalid room id"})
        # An unknown room is admitted: the real store may still be loading it.
        room = self.rooms.get(room_id) or self.rooms.get(suffix)
        if room is not None and not self.rooms.admits(room, self.user_id):
            raise JoinRefused({"reason": "unauthorized"})
        self.room_id = room_id
        # The channel's own PubSub subscription; with the topic written in
        # canonical form it doubles Phoenix's, and events arrive twice.
        self.pubsub.subscribe(f"room:{room_id}", self, duplicate=True)
        logger.info("room %s: %s watches the room", room_id, self.user_id)
        return {}

    def start(self) -> None:
        room = self.rooms.get(self.room_id) or self.rooms.get(
            self.topic[len(TOPIC_PREFIX) :]
        )
        members = 0
        if room is not None:
            members = len({m for m in [room.owner, *room.members] if m is not None})
        self.push(
            "room_state",
            {
                "room_id": self.room_id,
                "sensors": self.registry.room_sensors(self.room_id),
                "member_count": members,
            },
        )
        super().start()

    def handle_in(self, event: str, payload: Any) -> Reply | None:
        # Known limit: members are static (RoomStore); member_joined,
        # member_left and room_closed are never sent.
        return None

    def handle_info(self, event: ServerEvent) -> None:
        if event.event in ("measurement", "measurements_batch"):
            return
        self.push(event.event, event.payload)


def room_channel_factory(
    registry: SensorRegistry, rooms: RoomStore
) -> Callable[[str, str | None, Any, PubSub], Channel]:
    def factory(
        topic: str, join_ref: str | None, transport: Any, pubsub: PubSub
    ) -> Channel:
        params = getattr(transport, "params", {})
        user_id = registry.user_for_socket_token(params.get("token"))
        return RoomChannel(
            topic,
            join_ref,
            transport,
            pubsub,
            registry=registry,
            rooms=rooms,
            user_id=user_id,
        )

    return factory
