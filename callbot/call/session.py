"""A participant's session on ``call:{room_id}``: commands, typed pushes, roster.

The real server delivers most call pushes twice to every channel
(call-channel.md §1). :class:`DuplicateFilter` absorbs exactly the extra
copies, so a handler sees each push once while an event that really happens
twice (two toggles with the same value, a second endpoint crash) still comes
through twice.
The :class:`Roster` is updated idempotently on top of that.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from callbot.call import events as ev
from callbot.errors import ChannelError
from callbot.logtext import RepeatLimiter, clip
from callbot.phoenix.client import Channel, ChannelState, Socket
from callbot.rtc import media_events as me

logger = logging.getLogger(__name__)

Log = logging.Logger | logging.LoggerAdapter[logging.Logger]

ATTENTION_LEVELS = ("high", "medium", "low")
QUALITIES = ("high", "medium", "low")


def join_params(user_id: str, name: str) -> dict[str, Any]:
    """The ``phx_join`` params of the call channel, as the browser sends them."""
    return {"user_id": user_id, "user_info": {"name": name}}


class DuplicateFilter:
    """Absorbs the extra copies of each duplicated push (sans-I/O).

    The real server delivers each push ``copies`` times (2, call-channel.md
    §1); the first copy is kept and exactly ``copies - 1`` identical ones after
    it are absorbed, so a push that genuinely comes again is kept. The count
    is learnt from the bot's own ``participant_joined`` (a *probe*), which
    follows the ``join_call`` reply: an identical copy right behind it means
    two copies, any other push means one. ``window`` bounds how long a copy
    is waited for.
    """

    def __init__(self, window: float = 2.0, copies: int = 2) -> None:
        self.window = window
        self.copies = copies
        self._expected: dict[str, tuple[int, float]] = {}
        self._probe: str | None = None

    def accept(
        self, event: str, payload: object, now: float, *, probe: bool = False
    ) -> bool:
        """True if this push is new, False if it is a copy of an earlier one."""
        self._expire(now)
        key = event + "\0" + json.dumps(payload, sort_keys=True, default=str)

        if self._probe is not None:
            probe_key, self._probe = self._probe, None
            if key == probe_key:
                self.copies = 2
            else:
                self.copies = 1
                self._expected.pop(probe_key, None)

        pending = self._expected.get(key)
        if pending is not None:
            left, since = pending
            if left > 1:
                self._expected[key] = (left - 1, since)
            else:
                del self._expected[key]
            return False

        if probe:
            self._probe = key
            self._expected[key] = (1, now)
        elif self.copies > 1:
            self._expected[key] = (self.copies - 1, now)
        return True

    def _expire(self, now: float) -> None:
        stale = [k for k, (_, t) in self._expected.items() if now - t > self.window]
        for key in stale:
            del self._expected[key]


@dataclass
class Participant:
    """One entry of the call's participant table, as far as the bot knows it."""

    user_id: str
    endpoint_id: str
    user_info: dict[str, Any] = field(default_factory=dict)
    audio_enabled: Any = True
    video_enabled: Any = True
    speaking: bool = False
    tier: str = "viewer"
    attention_level: str = "high"
    quality_level: str | None = None

    @property
    def name(self) -> str:
        name = self.user_info.get("name")
        return name if isinstance(name, str) else self.user_id


class Roster:
    """Participants by user id; every update is idempotent."""

    def __init__(self) -> None:
        self.participants: dict[str, Participant] = {}

    def __contains__(self, user_id: object) -> bool:
        return user_id in self.participants

    def get(self, user_id: str) -> Participant | None:
        return self.participants.get(user_id)

    def user_ids(self) -> list[str]:
        return sorted(self.participants)

    def clear(self) -> None:
        self.participants.clear()

    def replace(self, table: dict[str, Any]) -> None:
        """Take over the participants table of ``join_call``/``get_participants``."""
        self.participants = {}
        for user_id, entry in table.items():
            if not isinstance(entry, dict) or not isinstance(
                entry.get("endpoint_id"), str
            ):
                logger.warning("participant entry of %s ignored: %r", user_id, entry)
                continue
            info = entry.get("user_info")
            self.participants[str(user_id)] = Participant(
                user_id=str(user_id),
                endpoint_id=entry["endpoint_id"],
                user_info=info if isinstance(info, dict) else {},
                audio_enabled=entry.get("audio_enabled", True),
                video_enabled=entry.get("video_enabled", True),
                speaking=entry.get("speaking") is True,
                tier=str(entry.get("tier", "viewer")),
                attention_level=str(entry.get("attention_level", "high")),
                quality_level=entry.get("quality_level"),
            )

    def apply(self, event: ev.CallEvent) -> bool:
        """Update from a push; True if the roster changed."""
        if isinstance(event, ev.ParticipantJoined):
            current = self.participants.get(event.user_id)
            if current is not None and current.endpoint_id == event.endpoint_id:
                return False
            self.participants[event.user_id] = Participant(
                user_id=event.user_id,
                endpoint_id=event.endpoint_id,
                user_info=dict(event.user_info),
                audio_enabled=event.audio_enabled,
                video_enabled=event.video_enabled,
            )
            return True
        if isinstance(event, ev.ParticipantLeft):
            return self.participants.pop(event.user_id, None) is not None
        if isinstance(event, ev.CallEnded):
            changed = bool(self.participants)
            self.participants.clear()
            return changed
        if isinstance(event, ev.AdaptiveQualityChanged):
            # The server makes everyone active without a tier_changed each.
            if event.enabled:
                return False
            changed = any(p.tier != "active" for p in self.participants.values())
            for entry in self.participants.values():
                entry.tier = "active"
            return changed

        user_id = getattr(event, "user_id", None)
        participant = self.participants.get(user_id) if user_id else None
        if participant is None:
            return False
        before = self._state(participant)
        if isinstance(event, ev.ParticipantSpeaking):
            participant.speaking = event.speaking
        elif isinstance(event, ev.TierChanged):
            participant.tier = event.tier
        elif isinstance(event, ev.ParticipantAudioChanged):
            participant.audio_enabled = event.audio_enabled
        elif isinstance(event, ev.ParticipantVideoChanged):
            participant.video_enabled = event.video_enabled
        return before != self._state(participant)

    @staticmethod
    def _state(participant: Participant) -> tuple[Any, ...]:
        p = participant
        return (p.speaking, p.tier, p.audio_enabled, p.video_enabled)


class JoinReply(BaseModel):
    """Reply of the channel join."""

    model_config = ConfigDict(extra="allow")
    ice_servers: list[dict[str, Any]] = Field(default_factory=list)


class JoinCallReply(BaseModel):
    """Reply of ``join_call``."""

    model_config = ConfigDict(extra="allow")
    endpoint_id: str
    participants: dict[str, Any] = Field(default_factory=dict)


class CallSession:
    """Commands and pushes of one user on one call channel."""

    def __init__(
        self,
        channel: Channel,
        user_id: str,
        *,
        allow_quality_tier_requests: bool = False,
        duplicate_window: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        log: Log | None = None,
    ) -> None:
        """Args:
        allow_quality_tier_requests: permit ``request_quality_tier``, which
            crashes the other participants' channels on the real server.
        """
        self.channel = channel
        self.user_id = user_id
        self.allow_quality_tier_requests = allow_quality_tier_requests
        self.roster = Roster()
        self.tracks: dict[str, ev.TrackAdded] = {}
        self.endpoint_id: str | None = None
        self.in_call = False
        self.ice_servers: list[dict[str, Any]] = []
        self._filter = DuplicateFilter(duplicate_window)
        self._warnings = RepeatLimiter()
        self._clock = clock
        self._log: Log = log or logger
        self._handlers: list[Callable[[ev.CallEvent], None]] = []
        for name in ev.PUSHES:
            channel.on(name, self._push_handler(name))
        channel.on_state(self._on_channel_state)

    @classmethod
    def open(
        cls, socket: Socket, room_id: str, user_id: str, name: str, **kwargs: Any
    ) -> CallSession:
        """A session on a new channel ``call:<room_id>`` of ``socket``."""
        channel = socket.channel(f"call:{room_id}", join_params(user_id, name))
        return cls(channel, user_id, **kwargs)

    def on_event(self, handler: Callable[[ev.CallEvent], None]) -> None:
        """Call ``handler`` with each push, duplicates removed."""
        self._handlers.append(handler)

    # ------------------------------------------------------------ channel

    async def join(self, timeout: float | None = None) -> JoinReply:
        """Join the channel (``phx_join``); the reply carries the ICE servers."""
        reply = JoinReply.model_validate(await self.channel.join(timeout))
        self.ice_servers = reply.ice_servers
        return reply

    async def leave(self, timeout: float | None = None) -> None:
        """Leave the channel (``phx_leave``)."""
        self.in_call = False
        await self.channel.leave(timeout)

    # ------------------------------------------------------------ commands

    async def join_call(self, timeout: float | None = None) -> JoinCallReply:
        """``join_call``: become a participant (again); a new endpoint each time."""
        reply = JoinCallReply.model_validate(
            await self.channel.push("join_call", {}, timeout)
        )
        self.endpoint_id = reply.endpoint_id
        self.in_call = True
        self.roster.replace(reply.participants)
        self.tracks.clear()
        return reply

    async def leave_call(self, timeout: float | None = None) -> None:
        """``leave_call``."""
        self.in_call = False
        await self.channel.push("leave_call", {}, timeout)

    async def get_participants(self, timeout: float | None = None) -> dict[str, Any]:
        """``get_participants``; the roster is refreshed from the answer."""
        reply = await self.channel.push("get_participants", {}, timeout)
        table = reply.get("participants")
        table = table if isinstance(table, dict) else {}
        self.roster.replace(table)
        return table

    async def toggle_audio(self, enabled: bool, timeout: float | None = None) -> None:
        await self.channel.push("toggle_audio", {"enabled": enabled}, timeout)

    async def toggle_video(self, enabled: bool, timeout: float | None = None) -> None:
        await self.channel.push("toggle_video", {"enabled": enabled}, timeout)

    async def set_quality(self, quality: str, timeout: float | None = None) -> None:
        await self.channel.push("set_quality", {"quality": quality}, timeout)

    async def request_quality_tier(
        self, target_user_id: str, tier: str, timeout: float | None = None
    ) -> None:
        """``request_quality_tier``; refused unless the session allows it."""
        if not self.allow_quality_tier_requests:
            raise ChannelError(
                "request_quality_tier is disabled: it crashes the other"
                " participants' channels on the real server"
            )
        payload = {"target_user_id": target_user_id, "tier": tier}
        await self.channel.push("request_quality_tier", payload, timeout)

    def send_media_event(self, event: me.ClientMediaEvent) -> None:
        """``media_event`` with the event double-encoded as a JSON string."""
        data = me.encode(event)
        self._log.debug("> media event %s", data[:200])
        self.channel.push_nowait("media_event", {"data": data})

    def speaking_state(self, speaking: bool) -> None:
        self.channel.push_nowait("speaking_state", {"speaking": bool(speaking)})

    def attention_state(self, level: str) -> None:
        if level not in ATTENTION_LEVELS:
            raise ValueError(f"attention level must be one of {ATTENTION_LEVELS}")
        self.channel.push_nowait("attention_state", {"level": level})

    def video_snapshot(
        self, data: str, width: int, height: int, timestamp: int
    ) -> None:
        """``video_snapshot`` with bare base64 JPEG ``data`` and a ms timestamp."""
        payload = {"data": data, "width": width, "height": height}
        payload["timestamp"] = timestamp
        self.channel.push_nowait("video_snapshot", payload)

    # ------------------------------------------------------------ pushes

    def _push_handler(self, name: str) -> Callable[[dict[str, Any]], None]:
        def handle(payload: dict[str, Any]) -> None:
            self._on_push(name, payload)

        return handle

    def _on_push(self, name: str, payload: Any) -> None:
        now = self._clock()
        probe = (
            name == "participant_joined"
            and isinstance(payload, dict)
            and payload.get("user_id") == self.user_id
        )
        if name not in ev.SINGLE_DELIVERY and not self._filter.accept(
            name, payload, now, probe=probe
        ):
            self._log.debug("< %s (duplicate absorbed)", name)
            return
        try:
            event = ev.parse_push(name, payload)
        except ev.PushError as exc:
            held = self._warnings.allow(f"bad push {name}", now)
            if held is not None:
                more = f" ({held} more like it not logged)" if held else ""
                self._log.warning(
                    "push the bot cannot use, ignored: %s%s", clip(exc), more
                )
            return
        if event is None:
            return
        if name != "media_event" and self._log.isEnabledFor(logging.DEBUG):
            self._log.debug("< %s %s", name, clip(payload))

        self.roster.apply(event)
        if isinstance(event, ev.TrackAdded):
            self.tracks[event.track_id] = event
        elif isinstance(event, ev.TrackRemoved):
            self.tracks.pop(event.track_id, None)
        elif isinstance(event, ev.ParticipantLeft) and event.user_id == self.user_id:
            self.in_call = False
        elif isinstance(event, ev.CallEnded):
            self.in_call = False
            self.tracks.clear()

        for handler in list(self._handlers):
            try:
                handler(event)
            except Exception:
                self._log.exception("handler of %s failed", name)

    def _on_channel_state(self, state: ChannelState, response: Any) -> None:
        if state is not ChannelState.JOINED:
            # The server forgot the call along with the channel process.
            self.in_call = False
