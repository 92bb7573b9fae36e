"""The control plane's record of one bot, kept up to date from its reports.

Sans-I/O: the launcher feeds it the worker's stdout lines and its exit code,
with the time passed in; nothing here reads a clock or touches a process.
"""

from __future__ import annotations

import json
import logging
import signal
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from api import lifecycle
from api.botlog import BotLog
from api.models import (
    TERMINAL_STATUSES,
    Bot,
    BotError,
    BotStatus,
    CallEvent,
    StatusChange,
    Track,
)
from callbot.logtext import clip

logger = logging.getLogger(__name__)

# Known limit: only the latest events are kept per bot.
MAX_EVENTS = 100

_STATUSES: frozenset[str] = frozenset(
    {"starting", "connecting", "in_call", "leaving", "left", "failed"}
)
_TIERS: frozenset[str] = frozenset({"active", "recent", "viewer", "idle"})
_ATTENTION_LEVELS: frozenset[str] = frozenset({"high", "medium", "low"})

# Why a bot left when the control plane asked it to without a rule.
LEFT_ON_REQUEST = "left on request"
# A failure the bot reported without saying why; its exit code says more.
FAILED_WITHOUT_REASON = "the bot reported a failure without a reason"

# The bot's own join and leave, as the server echoes them, get names of their
# own: they are not other participants coming and going.
_OWN_EVENTS = {"participant_joined": "self_joined", "participant_left": "self_left"}
# Events about the bot itself, which its reports send without a user id.
_OWN_STATE_EVENTS: frozenset[str] = frozenset({"speaking", "video_settings"})


def describe_exit(returncode: int) -> str:
    """Say how a worker process ended, naming the signal when it was killed."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"worker killed by {name} (exit code {returncode})"
    return f"worker exited with code {returncode}"


@dataclass
class RecordEvent:
    """One event of a bot, as stored and delivered; ``event_id`` never changes."""

    event_id: str
    bot_id: str
    type: str
    data: dict[str, Any]
    ts: float
    seq: int | None = None


@dataclass
class Changes:
    """What happened to a record since the store last saved it."""

    history: list[StatusChange] = field(default_factory=list)
    events: list[RecordEvent] = field(default_factory=list)


def _summary(
    event: str, user_id: str | None, report: dict[str, Any], ts: float
) -> CallEvent:
    """The short form of a worker's event report, for the bot's view."""
    speaking = report.get("speaking")
    tier = report.get("tier")
    fps = report.get("fps")
    crashed = report.get("crashed")
    track_id = report.get("track_id")
    return CallEvent(
        event=event,
        user_id=user_id,
        speaking=speaking if isinstance(speaking, bool) else None,
        tier=tier if tier in _TIERS else None,
        fps=fps if isinstance(fps, int) and not isinstance(fps, bool) else None,
        crashed=crashed if isinstance(crashed, bool) else None,
        track_id=track_id if isinstance(track_id, str) else None,
        ts=ts,
    )


def _track_key(track: Track) -> tuple[str, str, str]:
    # Inbound audio may come without a track id; the sender then names it.
    ident = track.track_id or track.endpoint_id or track.from_user_id or ""
    return (track.direction, track.kind, ident)


class BotRecord:
    """Everything the control plane knows about one bot."""

    def __init__(
        self,
        bot_id: str,
        *,
        server_url: str,
        room_id: str,
        user_id: str,
        display_name: str | None,
        now: float,
        ice_addresses: list[str] | None = None,
        webhook_url: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.bot_id = bot_id
        self.server_url = server_url
        self.room_id = room_id
        self.user_id = user_id
        self.display_name = display_name
        self.ice_addresses = ice_addresses
        self.webhook_url = webhook_url
        # Further fields of the worker's config line (plugins, duration, ...).
        self.options: dict[str, Any] = dict(options or {})
        self.status: BotStatus = "starting"
        self.reason: str | None = None
        self.error_code: str | None = None
        self.history: list[StatusChange] = [StatusChange(status="starting", ts=now)]
        # Where the launcher keeps the bot's files, and how far it has read.
        self.state_dir: str | None = None
        self.report_offset = 0
        self.keeper_pid: int | None = None
        self.log_tail: list[str] = []
        self.first_report_at: float | None = None
        self.in_call_at: float | None = None
        self.first_frame_at: float | None = None
        self.refused_transitions = 0
        # The control plane's leave rules (api.leaverules), as plain values.
        self.leave_rules: dict[str, float | None] | None = None
        self.endpoint_id: str | None = None
        self.participants: list[str] = []
        self.exit_code: int | None = None
        self.pid: int | None = None
        # The Ray node the bot's actor runs on (launcher = ray).
        self.node: str | None = None
        # The adaptive state of the newest stats report.
        self.tier: str | None = None
        self.speaking: bool | None = None
        self.attention: str | None = None
        self.snapshots_sent = 0
        self.snapshots_received: dict[str, int] = {}
        self.leave_requested = False
        self.bad_reports = 0
        self.created_at = now
        self.updated_at = now
        self._tracks: dict[tuple[str, str, str], Track] = {}
        self._events: deque[CallEvent] = deque(maxlen=MAX_EVENTS)
        self._changes = Changes(history=list(self.history))
        self._changes.events.append(
            self._event("status", {"status": "starting", "previous": None}, now)
        )
        self._log = BotLog(logger, bot_id, user_id, room_id)

    @property
    def terminal(self) -> bool:
        """True once the bot has left or failed for good."""
        return self.status in TERMINAL_STATUSES

    @property
    def exited(self) -> bool:
        """True once the worker process is gone."""
        return self.exit_code is not None

    @property
    def tracks(self) -> list[Track]:
        return list(self._tracks.values())

    @property
    def events(self) -> list[CallEvent]:
        return list(self._events)

    @property
    def error(self) -> BotError | None:
        if self.status != "failed":
            return None
        return BotError(
            code=self.error_code or lifecycle.BOT_FAILED, message=self.reason or ""
        )

    def take_changes(self) -> Changes:
        """Hand over the status changes and events not yet saved."""
        changes, self._changes = self._changes, Changes()
        return changes

    def snapshot(self) -> dict[str, Any]:
        """The record's changing state as JSON, for the store."""
        return {
            "endpoint_id": self.endpoint_id,
            "participants": list(self.participants),
            "tracks": [t.model_dump() for t in self._tracks.values()],
            "events": [e.model_dump() for e in self._events],
            "log_tail": list(self.log_tail),
            "leave_requested": self.leave_requested,
            "first_report_at": self.first_report_at,
            "in_call_at": self.in_call_at,
            "first_frame_at": self.first_frame_at,
            "leave_rules": self.leave_rules,
            "tier": self.tier,
            "speaking": self.speaking,
            "attention": self.attention,
            "snapshots_sent": self.snapshots_sent,
            "snapshots_received": dict(self.snapshots_received),
            "node": self.node,
        }

    def restore(self, snapshot: dict[str, Any], history: list[StatusChange]) -> None:
        """Take back the state a store saved (after a control-plane restart)."""
        self.endpoint_id = snapshot.get("endpoint_id")
        self.participants = list(snapshot.get("participants", []))
        for raw in snapshot.get("tracks", []):
            track = Track.model_validate(raw)
            self._tracks[_track_key(track)] = track
        self._events.extend(
            CallEvent.model_validate(e) for e in snapshot.get("events", [])
        )
        self.log_tail = list(snapshot.get("log_tail", []))
        self.leave_requested = bool(snapshot.get("leave_requested", False))
        self.first_report_at = snapshot.get("first_report_at")
        self.in_call_at = snapshot.get("in_call_at")
        self.first_frame_at = snapshot.get("first_frame_at")
        self.leave_rules = snapshot.get("leave_rules")
        self.tier = snapshot.get("tier")
        self.speaking = snapshot.get("speaking")
        self.attention = snapshot.get("attention")
        self.snapshots_sent = int(snapshot.get("snapshots_sent") or 0)
        self.snapshots_received = dict(snapshot.get("snapshots_received") or {})
        self.node = snapshot.get("node")
        self.history = list(history)
        self._changes = Changes()

    def worker_config(self) -> dict[str, Any]:
        """The configuration line the worker reads on stdin."""
        config: dict[str, Any] = {
            **self.options,
            "bot_id": self.bot_id,
            "server_url": self.server_url,
            "room_id": self.room_id,
            "user_id": self.user_id,
            "display_name": self.display_name,
        }
        if self.ice_addresses is not None:
            config["ice_addresses"] = list(self.ice_addresses)
        return config

    def feed_line(self, line: bytes | str, now: float) -> None:
        """Apply one line of the worker's stdout."""
        text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
        text = text.strip()
        if not text:
            return
        try:
            report = json.loads(text)
        except ValueError:
            self._bad_report("not JSON", text)
            return
        if not isinstance(report, dict):
            self._bad_report("not an object", text)
            return
        self.apply(report, now)

    def apply(self, report: dict[str, Any], now: float) -> None:
        """Apply one parsed report."""
        if self.first_report_at is None:
            self.first_report_at = now
        kind = report.get("type")
        if kind == "status":
            self._apply_status(report, now)
        elif kind == "joined":
            self._apply_joined(report, now)
        elif kind == "event":
            self._apply_event(report, now)
        elif kind == "stats":
            self._apply_stats(report, now)
        else:
            self._log.debug("ignoring report of type %r", kind)

    def request_leave(self, now: float, reason: str = LEFT_ON_REQUEST) -> None:
        """Note that the bot was asked to leave (by a user, or a leave rule)."""
        self.leave_requested = True
        if lifecycle.can_transition(self.status, "leaving"):
            self._set_status("leaving", reason, now)

    def fail(
        self, reason: str, now: float, code: str = lifecycle.WORKER_EXITED
    ) -> None:
        """Mark the bot failed for a reason the control plane found itself."""
        if self.terminal:
            return
        self._set_status("failed", reason, now, code=code)

    def process_exited(self, returncode: int, now: float) -> None:
        """Settle the final status once the worker process has ended."""
        self.exit_code = returncode
        self.updated_at = now
        if self.status == "left":
            self._log.info("worker ended (%s)", describe_exit(returncode))
        elif self.status == "failed":
            if self.reason in (None, FAILED_WITHOUT_REASON):
                self.reason = describe_exit(returncode)
            self._log.info("worker ended (%s)", describe_exit(returncode))
        elif returncode == 0 and self.leave_requested and self.status == "leaving":
            self._set_status("left", self.reason, now)
        else:
            code = (
                lifecycle.WORKER_KILLED if returncode < 0 else lifecycle.WORKER_EXITED
            )
            self._set_status("failed", describe_exit(returncode), now, code=code)

    def view(self) -> Bot:
        """The REST view of this bot."""
        return Bot(
            id=self.bot_id,
            status=self.status,
            reason=self.reason,
            error=self.error,
            webhook_url=self.webhook_url,
            server_url=self.server_url,
            room_id=self.room_id,
            user_id=self.user_id,
            display_name=self.display_name,
            endpoint_id=self.endpoint_id,
            participants=list(self.participants),
            tracks=self.tracks,
            events=self.events,
            history=list(self.history),
            tier=self.tier,  # type: ignore[arg-type]
            speaking=self.speaking,
            attention=self.attention,  # type: ignore[arg-type]
            snapshots_sent=self.snapshots_sent,
            snapshots_received=dict(self.snapshots_received),
            exit_code=self.exit_code,
            pid=self.pid,
            node=self.node,
            created_at=self.created_at,
            updated_at=self.updated_at,
        )

    def _apply_status(self, report: dict[str, Any], now: float) -> None:
        status = report.get("status")
        reason = report.get("reason")
        if status not in _STATUSES:
            self._bad_report("unknown status", repr(status))
            return
        if self.exited:
            return
        # Once asked to leave, a late in_call report must not undo "leaving".
        if self.leave_requested and status not in ("leaving", "left", "failed"):
            return
        reason = reason if isinstance(reason, str) else None
        if reason is None and status == "left" and self.status == "leaving":
            # The worker confirms the leave; why it left was said on leaving.
            reason = self.reason
        if status == self.status and (reason == self.reason or status == "leaving"):
            # The bot confirming a leave the control plane already noted.
            return
        if not lifecycle.can_transition(self.status, status):
            self.refused_transitions += 1
            self._log.warning("refused status change %s -> %s", self.status, status)
            return
        code = lifecycle.failure_code(reason) if status == "failed" else None
        self._set_status(status, reason, now, code=code)

    def _apply_joined(self, report: dict[str, Any], now: float) -> None:
        endpoint_id = report.get("endpoint_id")
        if isinstance(endpoint_id, str) and endpoint_id != self.endpoint_id:
            self.endpoint_id = endpoint_id
            self.updated_at = now
            self._changes.events.append(
                self._event("joined", {"endpoint_id": endpoint_id}, now)
            )
            self._log.info("joined the call as endpoint %s", endpoint_id)

    def _apply_event(self, report: dict[str, Any], now: float) -> None:
        event = report.get("event")
        if not isinstance(event, str):
            self._bad_report("event without a name", repr(report))
            return
        user_id = report.get("user_id")
        user_id = user_id if isinstance(user_id, str) else None
        if event in _OWN_STATE_EVENTS and user_id is None:
            user_id = self.user_id
        elif event in _OWN_EVENTS and user_id == self.user_id:
            event = _OWN_EVENTS[event]
        ts = report.get("ts")
        when = float(ts) if isinstance(ts, int | float) else now

        summary = _summary(event, user_id, report, when)
        self._events.append(summary)
        data = {k: v for k, v in report.items() if k not in ("type", "event")}
        if user_id is not None:
            data["user_id"] = user_id
        self._changes.events.append(self._event(event, data, when))

        if user_id is not None:
            if event == "participant_joined" and user_id not in self.participants:
                self.participants.append(user_id)
            elif event == "participant_left" and user_id in self.participants:
                self.participants.remove(user_id)
        self.updated_at = now
        self._log_event(summary)

    def _log_event(self, event: CallEvent) -> None:
        who = clip(event.user_id) if event.user_id is not None else "someone"
        kind = event.event
        if kind == "participant_joined":
            self._log.info("%s joined the call", who)
        elif kind == "participant_left":
            crashed = " (endpoint crashed)" if event.crashed else ""
            self._log.info("%s left the call%s", who, crashed)
        elif kind == "self_joined":
            self._log.info("the server announced the bot in the call")
        elif kind == "self_left":
            self._log.info("the server announced the bot left the call")
        elif kind == "speaking":
            self._log.info("speaking" if event.speaking else "stopped speaking")
        elif kind == "voice_activity":
            verb = "is speaking" if event.speaking else "stopped speaking"
            self._log.info("%s %s", who, verb)
        elif kind == "video_settings":
            self._log.info("tier %s, %s fps", event.tier, event.fps)
        elif kind == "tier_changed":
            self._log.info("the server put %s in tier %s", who, event.tier)
        elif kind == "track_ended":
            self._log.info("track %s of %s ended", clip(event.track_id), who)
        elif event.user_id is not None:
            self._log.info("event %s about %s", clip(kind), who)
        else:
            self._log.info("event %s", clip(kind))

    def _apply_stats(self, report: dict[str, Any], now: float) -> None:
        endpoint_id = report.get("endpoint_id")
        if isinstance(endpoint_id, str):
            self.endpoint_id = endpoint_id
        participants = report.get("participants")
        if isinstance(participants, list):
            self.participants = [p for p in participants if isinstance(p, str)]

        self._apply_adaptive(report)

        tracks = report.get("tracks")
        if isinstance(tracks, list):
            # Tracks missing from the newest report keep their last counters,
            # marked ended, so the totals of a finished call stay visible.
            seen: set[tuple[str, str, str]] = set()
            for raw in tracks:
                try:
                    track = Track.model_validate(raw)
                except ValidationError:
                    self._bad_report("bad track", repr(raw))
                    continue
                key = _track_key(track)
                seen.add(key)
                self._tracks[key] = track
                if (
                    track.direction == "inbound"
                    and track.frames > 0
                    and self.first_frame_at is None
                ):
                    self.first_frame_at = now
            for key, track in self._tracks.items():
                if key not in seen and not track.ended:
                    self._tracks[key] = track.model_copy(update={"ended": True})
        self.updated_at = now

    def _apply_adaptive(self, report: dict[str, Any]) -> None:
        tier = report.get("tier")
        if tier in _TIERS:
            self.tier = tier
        speaking = report.get("speaking")
        if isinstance(speaking, bool):
            self.speaking = speaking
        attention = report.get("attention")
        if attention in _ATTENTION_LEVELS:
            self.attention = attention
        sent = report.get("snapshots_sent")
        if isinstance(sent, int) and not isinstance(sent, bool) and sent >= 0:
            self.snapshots_sent = sent
        received = report.get("snapshots_received")
        if isinstance(received, dict):
            self.snapshots_received = {
                str(user): count
                for user, count in received.items()
                if isinstance(count, int) and not isinstance(count, bool)
            }

    def _set_status(
        self,
        status: BotStatus,
        reason: str | None,
        now: float,
        *,
        code: str | None = None,
    ) -> None:
        previous = self.status
        if status == "failed" and reason is None:
            reason = FAILED_WITHOUT_REASON
        self.status = status
        self.reason = reason
        self.error_code = code if status == "failed" else None
        self.updated_at = now
        if status == "in_call" and self.in_call_at is None:
            self.in_call_at = now
        change = StatusChange(status=status, code=code, message=reason, ts=now)
        self.history.append(change)
        self._changes.history.append(change)
        self._changes.events.append(
            self._event(
                "status",
                {
                    "status": status,
                    "previous": previous,
                    "code": code,
                    "message": reason,
                },
                now,
            )
        )
        if status == "failed":
            self._log.warning("failed (%s): %s", code, reason)
        elif reason is not None:
            self._log.info("%s -> %s (%s)", previous, status, reason)
        else:
            self._log.info("%s -> %s", previous, status)

    def _event(self, kind: str, data: dict[str, Any], ts: float) -> RecordEvent:
        return RecordEvent(
            event_id=str(uuid.uuid4()), bot_id=self.bot_id, type=kind, data=data, ts=ts
        )

    def _bad_report(self, why: str, text: str) -> None:
        self.bad_reports += 1
        self._log.warning("bad report from worker (%s): %.200s", why, text)
