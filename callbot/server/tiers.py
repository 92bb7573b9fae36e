"""The CallServer's adaptive tier algorithm (call-channel.md §5.6), sans-I/O.

Time is passed in as monotonic milliseconds. Every operation returns the
tier changes it caused, in participant order; the caller broadcasts one
``tier_changed`` per change.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

ACTIVE_SPEAKER_SLOTS = 3
RECENT_WINDOW_MS = 30_000


class Tier(StrEnum):
    ACTIVE = "active"
    RECENT = "recent"
    VIEWER = "viewer"
    IDLE = "idle"


class AttentionLevel(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @classmethod
    def parse(cls, value: object) -> AttentionLevel:
        """The CallServer's mapping: anything but high/medium/low is medium."""
        for level in cls:
            if value == level.value:
                return level
        return cls.MEDIUM


@dataclass
class SpeakerState:
    """The tier inputs and the current tier of one participant."""

    speaking: bool = False
    last_spoke_at: int | None = None
    attention_level: AttentionLevel = AttentionLevel.HIGH
    tier: Tier = Tier.VIEWER


@dataclass(frozen=True)
class TierChange:
    user_id: str
    tier: Tier


class TierPolicy:
    """Speaking, attention and tiers of every participant of one call."""

    def __init__(self, recent_window_ms: int = RECENT_WINDOW_MS) -> None:
        self.recent_window_ms = recent_window_ms
        self.states: dict[str, SpeakerState] = {}
        self.active_speakers: list[str] = []  # most recent first
        self.enabled = True

    def add(self, user_id: str) -> None:
        """A new participant: viewer, attention high, no tier change reported."""
        self.states[user_id] = SpeakerState()

    def remove(self, user_id: str) -> None:
        # The active speaker list is pruned only by the next full recompute.
        self.states.pop(user_id, None)

    def tier_of(self, user_id: str, now: int) -> Tier:
        state = self.states[user_id]
        if state.attention_level is AttentionLevel.LOW:
            return Tier.IDLE
        if state.speaking and user_id in self.active_speakers:
            return Tier.ACTIVE
        if self._recent(state, now):
            return Tier.RECENT
        return Tier.VIEWER

    def speaking(self, user_id: str, speaking: bool, now: int) -> list[TierChange]:
        """``speaking_state``; an unknown user changes nothing."""
        state = self.states.get(user_id)
        if state is None:
            return []
        state.speaking = speaking
        if speaking:
            state.last_spoke_at = now
            speakers = [user_id, *(u for u in self.active_speakers if u != user_id)]
            self.active_speakers = speakers[:ACTIVE_SPEAKER_SLOTS]
        if not self.enabled:
            return []
        return self.recompute_all(now)

    def attention(
        self, user_id: str, level: AttentionLevel, now: int
    ) -> list[TierChange]:
        """``attention_state``: recomputes this participant only, no pruning."""
        state = self.states.get(user_id)
        if state is None:
            return []
        state.attention_level = level
        if not self.enabled:
            return []
        return self._recompute(user_id, now)

    def tick(self, now: int) -> list[TierChange]:
        """The 5 s tier timer."""
        if not self.enabled or not self.states:
            return []
        return self.recompute_all(now)

    def recompute_all(self, now: int) -> list[TierChange]:
        changes = [c for u in list(self.states) for c in self._recompute(u, now)]
        self.active_speakers = [
            u
            for u in self.active_speakers
            if u in self.states
            and (self.states[u].speaking or self._recent(self.states[u], now))
        ]
        return changes

    def set_enabled(self, enabled: bool, now: int) -> list[TierChange]:
        """Disabling makes everyone active silently; enabling recomputes all."""
        self.enabled = enabled
        if not enabled:
            for state in self.states.values():
                state.tier = Tier.ACTIVE
            return []
        return self.recompute_all(now)

    def _recompute(self, user_id: str, now: int) -> list[TierChange]:
        tier = self.tier_of(user_id, now)
        state = self.states[user_id]
        if tier is state.tier:
            return []
        state.tier = tier
        return [TierChange(user_id, tier)]

    def _recent(self, state: SpeakerState, now: int) -> bool:
        return (
            state.last_spoke_at is not None
            and now - state.last_spoke_at < self.recent_window_ms
        )
