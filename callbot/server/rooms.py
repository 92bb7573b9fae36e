"""The in-memory RoomStore the call channel consults on join."""

from __future__ import annotations

from collections.abc import Iterable

from callbot.server.settings import RoomConfig


class RoomStore:
    """Rooms by name, from settings or the ``--room`` options of the CLI."""

    def __init__(self, rooms: Iterable[RoomConfig] = ()) -> None:
        self._rooms: dict[str, RoomConfig] = {}
        for room in rooms:
            self.put(room)

    def put(self, room: RoomConfig) -> None:
        self._rooms[room.name] = room

    def get(self, name: str) -> RoomConfig | None:
        return self._rooms.get(name)

    def names(self) -> list[str]:
        return sorted(self._rooms)

    @staticmethod
    def admits(room: RoomConfig, user_id: object) -> bool:
        """Public, or the user is the owner or a member."""
        return room.public or user_id == room.owner or user_id in room.members


def parse_room(spec: str) -> RoomConfig:
    """A CLI room: ``NAME`` (public) or ``NAME:OWNER[,MEMBER...]`` (private)."""
    name, sep, people = spec.partition(":")
    if not name:
        raise ValueError(f"room spec {spec!r} has no name")
    if not sep:
        return RoomConfig(name=name)
    listed = [p for p in people.split(",") if p]
    owner = listed[0] if listed else None
    return RoomConfig(name=name, public=False, owner=owner, members=listed[1:])
