"""``call:{room_id}``: Sensocto's CallChannel (call-channel.md §2 to §4)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from callbot.logtext import clip
from callbot.server.call_server import CallFull
from callbot.server.calls import Calls
from callbot.server.channel import (
    Channel,
    ChannelCrash,
    ExitReason,
    JoinRefused,
    Reply,
    Transport,
)
from callbot.server.pubsub import PubSub
from callbot.server.rooms import RoomStore
from callbot.server.settings import ServerSettings

logger = logging.getLogger(__name__)

TOPIC_PREFIX = "call:"
LOBBY = "lobby"

# Events that go through handle_out rather than the fastlane.
INTERCEPTS = frozenset(
    {
        "participant_audio_changed",
        "participant_video_changed",
        "participant_speaking",
        "video_snapshot",
    }
)

NOT_IN_CALL = "not_in_call"


class _BadEvent(ChannelCrash):
    """An event the real channel has no clause for."""


class CallChannel(Channel):
    """One socket's presence on a call topic."""

    intercepts = INTERCEPTS

    def __init__(
        self,
        topic: str,
        join_ref: str | None,
        transport: Transport,
        pubsub: PubSub,
        *,
        settings: ServerSettings,
        rooms: RoomStore,
        calls: Calls,
    ) -> None:
        super().__init__(topic, join_ref, transport, pubsub)
        self.settings = settings
        self.rooms = rooms
        self.calls = calls
        self.room_id = topic[len(TOPIC_PREFIX) :]
        self.user_id: str = ""
        self.user_info: Any = {}
        self.joined_call = False

    # -- join --------------------------------------------------------------

    def join(self, params: Any) -> dict[str, Any]:
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise ChannelCrash("join params are not a map")
        user_id = params.get("user_id")
        if user_id is None:
            raise JoinRefused({"reason": "user_id required"})

        if not (self.room_id == LOBBY and isinstance(user_id, str)):
            room = self.rooms.get(self.room_id)
            if room is None:
                raise JoinRefused({"reason": "unauthorized"})
            if not self.rooms.admits(room, user_id):
                raise JoinRefused({"reason": "not_room_member"})
        count = self.calls.participant_count(self.room_id)
        if count >= self.settings.channel_join_limit:
            raise JoinRefused({"reason": "call_full"})

        # Known limit: a non-string user_id admitted by a room is used as its str().
        self.user_id = user_id if isinstance(user_id, str) else str(user_id)
        self.user_info = params.get("user_info", {})

        # The second subscription to the channel's own topic, and the
        # personal topic for media events (call-channel.md §1).
        self.pubsub.subscribe(self.topic, self, duplicate=True)
        self.pubsub.subscribe(f"{self.topic}:{self.user_id}", self)
        logger.info(
            "room %s: user %s joined the channel", self.room_id, clip(self.user_id)
        )
        return {"ice_servers": [dict(s) for s in self.settings.ice_servers]}

    # -- client events -----------------------------------------------------

    def handle_in(self, event: str, payload: Any) -> Reply | None:
        handler = self._handlers().get(event)
        if handler is None:
            self._bad(f"no handle_in clause for event {event!r}")
            return None
        return handler(payload)

    def _handlers(self) -> dict[str, Callable[[Any], Reply | None]]:
        return {
            "join_call": self._join_call,
            "leave_call": self._leave_call,
            "media_event": self._media_event,
            "toggle_audio": self._toggle_audio,
            "toggle_video": self._toggle_video,
            "set_quality": self._set_quality,
            "request_quality_tier": self._request_quality_tier,
            "get_participants": self._get_participants,
            "speaking_state": self._speaking_state,
            "attention_state": self._attention_state,
            "video_snapshot": self._video_snapshot,
        }

    def _join_call(self, payload: Any) -> Reply | None:
        try:
            call = self.calls.ensure(self.room_id)
            participant = call.add_participant(self.user_id, self.user_info)
        except CallFull:
            return Reply.error("call_full")
        except Exception:  # JoinFailed, or the CallServer failing mid-call
            logger.warning(
                "room %s: join_call of %s failed",
                self.room_id,
                self.user_id,
                exc_info=True,
            )
            return Reply.error("join_failed")
        self.joined_call = True
        return Reply.ok(
            {
                "endpoint_id": participant.endpoint_id,
                "participants": call.participants_table(),
            }
        )

    def _leave_call(self, payload: Any) -> Reply | None:
        if not self.joined_call:
            return Reply.error(NOT_IN_CALL)
        self._leave()
        return Reply.ok()

    def _media_event(self, payload: Any) -> Reply | None:
        keys = self._require(payload, "data")
        if keys is None:
            return None
        if not self.joined_call:
            return Reply.error(NOT_IN_CALL)
        call = self.calls.get(self.room_id)
        if call is not None:
            call.media_event(self.user_id, keys[0])
        return None

    def _toggle_audio(self, payload: Any) -> Reply | None:
        return self._toggle(payload, "participant_audio_changed", "audio_enabled")

    def _toggle_video(self, payload: Any) -> Reply | None:
        return self._toggle(payload, "participant_video_changed", "video_enabled")

    def _toggle(self, payload: Any, event: str, field: str) -> Reply | None:
        keys = self._require(payload, "enabled")
        if keys is None:
            return None
        if not self.joined_call:
            return Reply.error(NOT_IN_CALL)
        self.broadcast(event, {"user_id": self.user_id, field: keys[0]})
        return Reply.ok()

    def _set_quality(self, payload: Any) -> Reply | None:
        keys = self._require(payload, "quality")
        if keys is None:
            return None
        if not self.joined_call:
            return Reply.error(NOT_IN_CALL)
        call = self.calls.get(self.room_id)
        if call is None:
            return Reply.error("set_quality_failed")
        call.set_quality(keys[0])
        return Reply.ok()

    def _request_quality_tier(self, payload: Any) -> Reply | None:
        keys = self._require(payload, "target_user_id", "tier")
        if keys is None:
            return None
        if not self.joined_call:
            return Reply.error(NOT_IN_CALL)
        target, tier = keys
        self.broadcast_from(
            "quality_tier_request",
            {"from_user_id": self.user_id, "target_user_id": target, "tier": tier},
        )
        return Reply.ok()

    def _get_participants(self, payload: Any) -> Reply | None:
        call = self.calls.get(self.room_id)
        table = call.participants_table() if call is not None else {}
        return Reply.ok({"participants": table})

    def _speaking_state(self, payload: Any) -> Reply | None:
        keys = self._require(payload, "speaking")
        if keys is None:
            return None
        if not self.joined_call:
            return Reply.error(NOT_IN_CALL)
        speaking = keys[0]
        if not isinstance(speaking, bool):
            self._bad(f"speaking must be a boolean, got {speaking!r}")
            return None
        call = self.calls.get(self.room_id)
        if call is not None:
            call.update_speaking(self.user_id, speaking)
        self.broadcast(
            "participant_speaking", {"user_id": self.user_id, "speaking": speaking}
        )
        return None

    def _attention_state(self, payload: Any) -> Reply | None:
        keys = self._require(payload, "level")
        if keys is None:
            return None
        if not self.joined_call:
            return Reply.error(NOT_IN_CALL)
        call = self.calls.get(self.room_id)
        if call is not None:
            call.update_attention(self.user_id, keys[0])
        return None

    def _video_snapshot(self, payload: Any) -> Reply | None:
        names = ("data", "width", "height", "timestamp")
        keys = self._require(payload, *names)
        if keys is None:
            return None
        if not self.joined_call:
            return Reply.error(NOT_IN_CALL)
        self.broadcast(
            "video_snapshot",
            {"user_id": self.user_id, **dict(zip(names, keys, strict=True))},
        )
        return None

    # -- pushes --------------------------------------------------------------

    def handle_out(self, event: str, payload: dict[str, Any]) -> None:
        if event == "video_snapshot":
            if payload.get("user_id") != self.user_id:
                self.push(event, payload)
            return
        if event in INTERCEPTS:
            self.push(event, payload)
            return
        # The raw second copy of a non-intercepted broadcast
        # (quality_tier_request): the real channel has no clause for it.
        if self.settings.quality_tier_request_crashes:
            raise ChannelCrash(f"no handle_out clause for {event!r}")
        logger.debug("room %s: dropped raw broadcast %s", self.room_id, event)

    def terminate(self, reason: ExitReason) -> None:
        logger.info(
            "room %s: channel of user %s ended (%s)",
            self.room_id,
            self.user_id,
            reason.value,
        )
        if self.joined_call:
            self._leave()

    # -- internals -----------------------------------------------------------

    def _leave(self) -> None:
        call = self.calls.get(self.room_id)
        if call is not None:
            call.remove_participant(self.user_id)
        self.joined_call = False

    def _require(self, payload: Any, *names: str) -> tuple[Any, ...] | None:
        """The values of required keys; a missing one is a crash."""
        if not isinstance(payload, dict) or any(n not in payload for n in names):
            self._bad(f"payload {payload!r} lacks {', '.join(names)}")
            return None
        return tuple(payload[n] for n in names)

    def _bad(self, why: str) -> None:
        if self.settings.crash_on_bad_event:
            raise _BadEvent(why)
        logger.warning(
            "room %s: user %s: ignored: %s", self.room_id, clip(self.user_id), clip(why)
        )


def call_channel_factory(
    settings: ServerSettings, rooms: RoomStore, calls: Calls
) -> Callable[[str, str | None, Transport, PubSub], Channel]:
    """The router entry for ``call:*``."""

    def make(
        topic: str, join_ref: str | None, transport: Transport, pubsub: PubSub
    ) -> Channel:
        return CallChannel(
            topic,
            join_ref,
            transport,
            pubsub,
            settings=settings,
            rooms=rooms,
            calls=calls,
        )

    return make
