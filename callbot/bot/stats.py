"""Per-track counters of a bot and the ``stats`` report built from them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class OutboundTrackStats:
    """A track the bot publishes."""

    kind: str
    track_id: str
    frames: int = 0
    packets: int = 0
    bytes: int = 0

    def report(self) -> dict[str, Any]:
        return {
            "direction": "outbound",
            "kind": self.kind,
            "track_id": self.track_id,
            "frames": self.frames,
            "packets": self.packets,
            "bytes": self.bytes,
        }


@dataclass
class InboundTrackStats:
    """A remote track the bot receives (decoded frames, not just packets)."""

    kind: str
    track_id: str
    from_user_id: str | None
    endpoint_id: str | None
    frames: int = 0
    packets: int = 0
    bytes: int = 0
    width: int | None = None
    height: int | None = None
    seconds: float = 0.0
    ended: bool = False

    def count_video(self, width: int, height: int) -> None:
        self.frames += 1
        self.width, self.height = width, height

    def count_audio(self, samples: int, sample_rate: int) -> None:
        self.frames += 1
        if sample_rate > 0:
            self.seconds += samples / sample_rate

    def report(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "direction": "inbound",
            "kind": self.kind,
            "track_id": self.track_id,
            "from_user_id": self.from_user_id,
            "endpoint_id": self.endpoint_id,
            "frames": self.frames,
            "packets": self.packets,
            "bytes": self.bytes,
            "ended": self.ended,
        }
        if self.kind == "video":
            entry["width"], entry["height"] = self.width, self.height
        else:
            entry["seconds"] = round(self.seconds, 3)
        return entry


@dataclass
class BotStats:
    """Everything the bot counts; tracks of earlier endpoints are kept, ended."""

    outbound: dict[str, OutboundTrackStats] = field(default_factory=dict)
    inbound: dict[str, InboundTrackStats] = field(default_factory=dict)
    # host:port pairs of the nominated ICE pairs, and the remote candidates used.
    selected_pairs: list[tuple[str, str]] = field(default_factory=list)
    remote_candidates: list[str] = field(default_factory=list)
    endpoint_id: str | None = None
    joins: int = 0

    def inbound_track(
        self, kind: str, track_id: str, user_id: str | None, endpoint_id: str | None
    ) -> InboundTrackStats:
        stats = self.inbound.get(track_id)
        if stats is None or stats.ended:
            stats = InboundTrackStats(kind, track_id, user_id, endpoint_id)
            self.inbound[track_id] = stats
        return stats

    def end_all(self) -> None:
        for stats in self.inbound.values():
            stats.ended = True

    def report(self, ts: float, participants: list[str]) -> dict[str, Any]:
        tracks = [t.report() for t in self.outbound.values()]
        tracks += [t.report() for t in self.inbound.values()]
        return {
            "type": "stats",
            "ts": ts,
            "endpoint_id": self.endpoint_id,
            "participants": participants,
            "tracks": tracks,
            "ice": {
                "selected_pairs": [list(p) for p in self.selected_pairs],
                "remote_candidates": list(self.remote_candidates),
            },
            "joins": self.joins,
        }
