"""A recording's manifest: who was there, which files, and when, on one clock.

Every time is in seconds since the recording started (``offset``), measured
on the recorder's wall clock, with the recording's start as a Unix time, so
the tracks, tier changes, speaking intervals and snapshots can be aligned.
The manifest is rewritten atomically on every change, so it stays readable if
the process is killed.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MANIFEST_NAME = "manifest.json"
VERSION = 1


@dataclass
class ParticipantEntry:
    user_id: str
    endpoint_id: str | None = None
    display_name: str | None = None
    joined: float | None = None
    left: float | None = None
    crashed: bool = False


@dataclass
class TrackEntry:
    track_id: str
    kind: str
    user_id: str | None
    endpoint_id: str | None
    file: str
    codec: str
    start: float | None = None
    """Offset of the file's first frame (its position 0)."""
    end: float | None = None
    duration: float | None = None
    frames: int = 0
    keyframes: int = 0
    sizes: list[dict[str, int]] = field(default_factory=list)
    """Video sizes: ``{"position_ms", "width", "height"}`` from each change on."""
    closed: bool = False


@dataclass
class Manifest:
    """The manifest's content; :meth:`write` puts it next to the media files."""

    room_id: str
    bot_id: str
    started_at: float
    """Unix time of offset 0."""
    ended_at: float | None = None
    participants: dict[str, ParticipantEntry] = field(default_factory=dict)
    tracks: list[TrackEntry] = field(default_factory=list)
    tiers: list[dict[str, Any]] = field(default_factory=list)
    speaking: list[dict[str, Any]] = field(default_factory=list)
    snapshots: list[dict[str, Any]] = field(default_factory=list)

    def offset(self, wall: float) -> float:
        return round(wall - self.started_at, 3)

    def participant(self, user_id: str) -> ParticipantEntry:
        entry = self.participants.get(user_id)
        if entry is None:
            entry = self.participants[user_id] = ParticipantEntry(user_id)
        return entry

    def speaking_changed(self, user_id: str, speaking: bool, wall: float) -> bool:
        """Open or close ``user_id``'s speaking interval; False if nothing changed."""
        at = self.offset(wall)
        open_interval = next(
            (
                s
                for s in reversed(self.speaking)
                if s["user_id"] == user_id and s["end"] is None
            ),
            None,
        )
        if speaking and open_interval is None:
            self.speaking.append({"user_id": user_id, "start": at, "end": None})
            return True
        if not speaking and open_interval is not None:
            open_interval["end"] = at
            return True
        return False

    def close_open_intervals(self, wall: float) -> None:
        for interval in self.speaking:
            if interval["end"] is None:
                interval["end"] = self.offset(wall)

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "clock": "seconds since started_at (Unix time)",
            "room_id": self.room_id,
            "bot_id": self.bot_id,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "participants": [asdict(p) for p in self.participants.values()],
            "tracks": [asdict(t) for t in self.tracks],
            "tiers": self.tiers,
            "speaking": self.speaking,
            "snapshots": self.snapshots,
        }

    def write(self, directory: Path) -> Path:
        """Write ``manifest.json`` atomically (temporary file, then rename)."""
        path = directory / MANIFEST_NAME
        temporary = directory / (MANIFEST_NAME + ".tmp")
        temporary.write_text(json.dumps(self.as_dict(), indent=1))
        os.replace(temporary, path)
        return path
