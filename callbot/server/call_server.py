"""The CallServer of one room: participants, tracks, quality, tiers, engine.

A plain object whose methods run to completion, as the GenServer's
callbacks do; its broadcasts go to channel mailboxes through PubSub, and
its timers run on the injected :class:`~callbot.server.clock.Clock`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from callbot.logtext import clip
from callbot.server.clock import Clock, Timer
from callbot.server.pubsub import PubSub, ServerEvent
from callbot.server.quality import Quality, calculate_quality, quality_profile
from callbot.server.settings import ServerSettings
from callbot.server.tiers import AttentionLevel, Tier, TierChange, TierPolicy

logger = logging.getLogger(__name__)

# System.unique_integer([:positive, :monotonic]) is VM-wide: one counter for
# every call of the process.
_endpoint_numbers = itertools.count(1)


class MediaEngine(Protocol):
    """The media plane of one call (``callbot.server.engine.Engine``)."""

    def add_endpoint(self, endpoint_id: str) -> None: ...
    def remove_endpoint(self, endpoint_id: str) -> None: ...
    def handle_media_event(self, endpoint_id: str, data: object) -> None: ...
    def crash_endpoint(self, endpoint_id: str, reason: str) -> None: ...
    def endpoint_stats(self, endpoint_id: str) -> dict[str, Any]: ...
    async def close(self) -> None: ...


EngineFactory = Callable[[str, ServerSettings, "CallServer"], MediaEngine]


def default_engine_factory(
    room_id: str, settings: ServerSettings, listener: CallServer
) -> MediaEngine:
    """The real media plane, imported only when a call starts."""
    from callbot.server.engine import Engine

    engine: MediaEngine = Engine(room_id, settings, listener)
    return engine


class CallFull(Exception):
    """``{:error, :call_full}``."""


class JoinFailed(Exception):
    """Any other failure of ``join_call``."""


def format_utc(moment: datetime) -> str:
    """Elixir's DateTime JSON: ISO 8601, microseconds, ``Z``."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Participant:
    """The identity part of a participant record; tiers live in the policy."""

    user_id: str
    endpoint_id: str
    user_info: Any
    joined_at: datetime
    quality_level: Quality
    audio_enabled: bool = True
    video_enabled: bool = True
    tracks: dict[str, Any] = field(default_factory=dict)  # unused, as upstream

    def joined_payload(self) -> dict[str, Any]:
        """``participant_joined``: the first six fields."""
        return {
            "user_id": self.user_id,
            "endpoint_id": self.endpoint_id,
            "user_info": self.user_info,
            "joined_at": format_utc(self.joined_at),
            "audio_enabled": self.audio_enabled,
            "video_enabled": self.video_enabled,
        }


@dataclass(frozen=True)
class TrackInfo:
    track_id: str
    endpoint_id: str
    type: str
    encoding: str


class CallServer:
    """One room's call. Implements the engine's listener interface."""

    def __init__(
        self,
        room_id: str,
        *,
        settings: ServerSettings,
        clock: Clock,
        pubsub: PubSub,
        engine_factory: EngineFactory = default_engine_factory,
        on_stop: Callable[[CallServer, str], None] | None = None,
        received_candidates: list[str] | None = None,
    ) -> None:
        self.room_id = room_id
        self.topic = f"call:{room_id}"
        self.settings = settings
        self.clock = clock
        self.pubsub = pubsub
        self.on_stop = on_stop
        self.received_candidates = (
            received_candidates if received_candidates is not None else []
        )
        self.participants: dict[str, Participant] = {}
        self.track_registry: dict[str, TrackInfo] = {}
        self.quality_profile = "auto"
        self.max_participants = settings.call_limit
        self.tiers = TierPolicy(settings.recent_window_ms)
        self.running = True
        self.closing: asyncio.Task[None] | None = None
        self.engine = engine_factory(room_id, settings, self)
        self._inactivity: Timer | None = None
        self._arm_inactivity()
        self._tier_timer = clock.call_later(settings.tier_interval_ms, self._tier_tick)
        if not settings.adaptive_quality:
            self.tiers.set_enabled(False, clock.monotonic_ms())
        logger.info("call started: room %s", room_id)

    @property
    def adaptive_quality_enabled(self) -> bool:
        return self.tiers.enabled

    # -- participants ------------------------------------------------------

    def add_participant(self, user_id: str, user_info: Any) -> Participant:
        """``join_call``; a user already in the table is replaced silently."""
        old = self.participants.get(user_id)
        if old is not None:
            logger.info(
                "room %s: user %s rejoined, endpoint %s replaced",
                self.room_id,
                user_id,
                old.endpoint_id,
            )
            self._drop_participant(old)
            self.engine.remove_endpoint(old.endpoint_id)
        if len(self.participants) >= self.max_participants:
            raise CallFull

        endpoint_id = f"{user_id}_{next(_endpoint_numbers)}"
        try:
            self.engine.add_endpoint(endpoint_id)
        except Exception as exc:
            logger.exception("room %s: engine refused %s", self.room_id, endpoint_id)
            raise JoinFailed(str(exc)) from exc

        participant = Participant(
            user_id=user_id,
            endpoint_id=endpoint_id,
            user_info=user_info,
            joined_at=self.clock.utc_now(),
            quality_level=calculate_quality(len(self.participants) + 1),
        )
        self.participants[user_id] = participant
        self.tiers.add(user_id)
        self._broadcast("participant_joined", participant.joined_payload())
        if not self.settings.adaptive_quality and not self.tiers.enabled:
            # As set_adaptive_quality(false) once more: a new participant would
            # otherwise stay a viewer while tiers are off.
            self.tiers.states[user_id].tier = Tier.ACTIVE
            self._broadcast("adaptive_quality_changed", {"enabled": False})
        self._cancel_inactivity()
        logger.info(
            "room %s: user %s joined the call as endpoint %s",
            self.room_id,
            user_id,
            endpoint_id,
        )
        return participant

    def remove_participant(self, user_id: str) -> bool:
        """``leave_call``; false if the user is not in the call."""
        participant = self.participants.get(user_id)
        if participant is None:
            return False
        self.engine.remove_endpoint(participant.endpoint_id)
        self._drop_participant(participant)
        self._broadcast("participant_left", {"user_id": user_id})
        logger.info("room %s: user %s left the call", self.room_id, clip(user_id))
        if not self.participants:
            self._arm_inactivity()
        else:
            self._update_quality()
        return True

    def participants_table(self) -> dict[str, dict[str, Any]]:
        """The ten serialised fields of every participant, by user id."""
        table = {}
        for user_id, participant in self.participants.items():
            state = self.tiers.states[user_id]
            entry = participant.joined_payload()
            entry.update(
                quality_level=participant.quality_level.value,
                speaking=state.speaking,
                tier=state.tier.value,
                attention_level=state.attention_level.value,
            )
            table[user_id] = entry
        return table

    def endpoint_of(self, user_id: str) -> str | None:
        participant = self.participants.get(user_id)
        return participant.endpoint_id if participant else None

    # -- client requests ---------------------------------------------------

    def media_event(self, user_id: str, data: object) -> None:
        """Forward a client media event to the user's endpoint, if any."""
        participant = self.participants.get(user_id)
        if participant is None:
            logger.debug("room %s: media event of unknown %s", self.room_id, user_id)
            return
        self.engine.handle_media_event(participant.endpoint_id, data)

    def set_quality(self, quality: object) -> Quality:
        """Stores the profile, then recomputes the level from the count."""
        self.quality_profile = quality_profile(quality)
        return self._update_quality()

    def update_speaking(self, user_id: str, speaking: bool) -> None:
        now = self.clock.monotonic_ms()
        self._announce(self.tiers.speaking(user_id, speaking, now))

    def update_attention(self, user_id: str, level: object) -> None:
        now = self.clock.monotonic_ms()
        parsed = AttentionLevel.parse(level)
        self._announce(self.tiers.attention(user_id, parsed, now))

    def set_adaptive_quality(self, enabled: bool) -> None:
        """Server API only; no channel event reaches it."""
        changes = self.tiers.set_enabled(enabled, self.clock.monotonic_ms())
        if not enabled:
            self._broadcast("adaptive_quality_changed", {"enabled": False})
        self._announce(changes)

    # -- engine listener ---------------------------------------------------

    def on_media_event(self, endpoint_id: str, data: str) -> None:
        participant = self._by_endpoint(endpoint_id)
        if participant is None:
            logger.debug("room %s: media event for gone %s", self.room_id, endpoint_id)
            return
        topic = f"{self.topic}:{participant.user_id}"
        self.pubsub.broadcast(ServerEvent(topic, "media_event", {"data": data}))

    def on_track_added(
        self, endpoint_id: str, track_id: str, kind: str, encoding: str
    ) -> None:
        if not self.running:
            return
        self.track_registry[track_id] = TrackInfo(track_id, endpoint_id, kind, encoding)
        logger.info(
            "room %s: endpoint %s added %s track %s (%s)",
            self.room_id,
            endpoint_id,
            kind,
            track_id,
            encoding,
        )
        self._broadcast(
            "track_added",
            {
                "track_id": track_id,
                "endpoint_id": endpoint_id,
                "type": kind,
                "encoding": encoding,
            },
        )

    def on_track_removed(self, endpoint_id: str, track_id: str) -> None:
        if not self.running:
            return
        self.track_registry.pop(track_id, None)
        logger.info("room %s: track %s removed", self.room_id, track_id)
        self._broadcast("track_removed", {"track_id": track_id})

    def on_endpoint_removed(self, endpoint_id: str) -> None:
        self._engine_removal(endpoint_id, crashed=False, reason="disconnect")

    def on_endpoint_crashed(self, endpoint_id: str, reason: str) -> None:
        self._engine_removal(endpoint_id, crashed=True, reason=reason)

    def on_candidate_received(self, endpoint_id: str, candidate: str) -> None:
        """Every remote ICE candidate an endpoint got (asserted by tests)."""
        self.received_candidates.append(candidate)

    # -- lifecycle ---------------------------------------------------------

    def stop(self, reason: str) -> None:
        """``terminate``: stop the engine and timers, broadcast ``call_ended``."""
        if not self.running:
            return
        self.running = False
        self._cancel_inactivity()
        self._tier_timer.cancel()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:
            self.closing = loop.create_task(self.engine.close())
        self._broadcast("call_ended", {})
        logger.info("call ended: room %s (%s)", self.room_id, reason)
        if self.on_stop is not None:
            self.on_stop(self, reason)

    # -- internals ---------------------------------------------------------

    def _broadcast(self, event: str, payload: dict[str, Any]) -> None:
        self.pubsub.broadcast(ServerEvent(self.topic, event, payload))

    def _announce(self, changes: list[TierChange]) -> None:
        for change in changes:
            logger.info(
                "room %s: user %s tier %s", self.room_id, change.user_id, change.tier
            )
            self._broadcast(
                "tier_changed", {"user_id": change.user_id, "tier": change.tier.value}
            )

    def _update_quality(self) -> Quality:
        quality = calculate_quality(len(self.participants))
        for participant in self.participants.values():
            participant.quality_level = quality
        self._broadcast("quality_changed", {"quality": quality.value})
        return quality

    def _by_endpoint(self, endpoint_id: str) -> Participant | None:
        for participant in self.participants.values():
            if participant.endpoint_id == endpoint_id:
                return participant
        return None

    def _drop_participant(self, participant: Participant) -> None:
        self._drop_tracks(participant.endpoint_id)
        del self.participants[participant.user_id]
        self.tiers.remove(participant.user_id)

    def _drop_tracks(self, endpoint_id: str) -> None:
        for track_id, track in list(self.track_registry.items()):
            if track.endpoint_id == endpoint_id:
                del self.track_registry[track_id]

    def _engine_removal(self, endpoint_id: str, *, crashed: bool, reason: str) -> None:
        if not self.running:
            return
        self._drop_tracks(endpoint_id)
        participant = self._by_endpoint(endpoint_id)
        if participant is None:
            return
        self._drop_participant(participant)
        payload: dict[str, Any] = {"user_id": participant.user_id}
        if crashed:
            payload["crashed"] = True
            logger.warning(
                "room %s: endpoint %s of user %s crashed: %s",
                self.room_id,
                endpoint_id,
                participant.user_id,
                reason,
            )
        else:
            logger.info(
                "room %s: endpoint %s of user %s removed",
                self.room_id,
                endpoint_id,
                participant.user_id,
            )
        # No quality update and no inactivity timer on this path, as upstream.
        self._broadcast("participant_left", payload)

    def _arm_inactivity(self) -> None:
        self._cancel_inactivity()
        self._inactivity = self.clock.call_later(
            self.settings.inactivity_timeout_ms, self._inactivity_fired
        )

    def _cancel_inactivity(self) -> None:
        if self._inactivity is not None:
            self._inactivity.cancel()
            self._inactivity = None

    def _inactivity_fired(self) -> None:
        self._inactivity = None
        if self.running and not self.participants:
            self.stop("inactivity")

    def _tier_tick(self) -> None:
        if not self.running:
            return
        # Re-armed at the start of the tick, as upstream.
        self._tier_timer = self.clock.call_later(
            self.settings.tier_interval_ms, self._tier_tick
        )
        self._announce(self.tiers.tick(self.clock.monotonic_ms()))
