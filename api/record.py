"""The control plane's record of one bot, kept up to date from its reports.

Sans-I/O: the launcher feeds it the worker's stdout lines and its exit code,
with the time passed in; nothing here reads a clock or touches a process.
"""

from __future__ import annotations

import json
import logging
import signal
from collections import deque
from typing import Any

from pydantic import ValidationError

from api.models import TERMINAL_STATUSES, Bot, BotStatus, CallEvent, Track

logger = logging.getLogger(__name__)

# Known limit: only the latest events are kept per bot.
MAX_EVENTS = 100

_STATUSES: frozenset[str] = frozenset(
    {"starting", "connecting", "in_call", "leaving", "left", "failed"}
)


def describe_exit(returncode: int) -> str:
    """Say how a worker process ended, naming the signal when it was killed."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"worker killed by {name} (exit code {returncode})"
    return f"worker exited with code {returncode}"


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
    ) -> None:
        self.bot_id = bot_id
        self.server_url = server_url
        self.room_id = room_id
        self.user_id = user_id
        self.display_name = display_name
        self.ice_addresses = ice_addresses
        self.status: BotStatus = "starting"
        self.reason: str | None = None
        self.endpoint_id: str | None = None
        self.participants: list[str] = []
        self.exit_code: int | None = None
        self.pid: int | None = None
        self.leave_requested = False
        self.bad_reports = 0
        self.created_at = now
        self.updated_at = now
        self._tracks: dict[tuple[str, str, str], Track] = {}
        self._events: deque[CallEvent] = deque(maxlen=MAX_EVENTS)
        self._log = logging.LoggerAdapter(
            logger, {"bot_id": bot_id, "room_id": room_id}
        )

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

    def worker_config(self) -> dict[str, Any]:
        """The configuration line the worker reads on stdin."""
        config: dict[str, Any] = {
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

    def request_leave(self, now: float) -> None:
        """Note that the bot was asked to leave."""
        self.leave_requested = True
        if not self.terminal:
            self._set_status("leaving", None, now)

    def fail(self, reason: str, now: float) -> None:
        """Mark the bot failed for a reason the control plane found itself."""
        if self.status == "failed":
            return
        self._set_status("failed", reason, now)

    def process_exited(self, returncode: int, now: float) -> None:
        """Settle the final status once the worker process has ended."""
        self.exit_code = returncode
        self.updated_at = now
        if self.status == "left":
            self._log.info("worker ended (%s)", describe_exit(returncode))
        elif self.status == "failed":
            if self.reason is None:
                self.reason = describe_exit(returncode)
            self._log.info("worker ended (%s)", describe_exit(returncode))
        elif returncode == 0 and self.leave_requested:
            self._set_status("left", None, now)
        else:
            self._set_status("failed", describe_exit(returncode), now)

    def view(self) -> Bot:
        """The REST view of this bot."""
        return Bot(
            id=self.bot_id,
            status=self.status,
            reason=self.reason,
            server_url=self.server_url,
            room_id=self.room_id,
            user_id=self.user_id,
            display_name=self.display_name,
            endpoint_id=self.endpoint_id,
            participants=list(self.participants),
            tracks=self.tracks,
            events=self.events,
            exit_code=self.exit_code,
            pid=self.pid,
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
        if status == self.status and reason == self.reason:
            return
        self._set_status(status, reason if isinstance(reason, str) else None, now)

    def _apply_joined(self, report: dict[str, Any], now: float) -> None:
        endpoint_id = report.get("endpoint_id")
        if isinstance(endpoint_id, str) and endpoint_id != self.endpoint_id:
            self.endpoint_id = endpoint_id
            self.updated_at = now
            self._log.info("joined the call as endpoint %s", endpoint_id)

    def _apply_event(self, report: dict[str, Any], now: float) -> None:
        event = report.get("event")
        if not isinstance(event, str):
            self._bad_report("event without a name", repr(report))
            return
        user_id = report.get("user_id")
        user_id = user_id if isinstance(user_id, str) else None
        ts = report.get("ts")
        self._events.append(
            CallEvent(
                event=event,
                user_id=user_id,
                ts=float(ts) if isinstance(ts, int | float) else now,
            )
        )
        if user_id is not None:
            if event == "participant_joined" and user_id not in self.participants:
                self.participants.append(user_id)
            elif event == "participant_left" and user_id in self.participants:
                self.participants.remove(user_id)
        self.updated_at = now
        self._log.info("saw %s of %s", event, user_id)

    def _apply_stats(self, report: dict[str, Any], now: float) -> None:
        endpoint_id = report.get("endpoint_id")
        if isinstance(endpoint_id, str):
            self.endpoint_id = endpoint_id
        participants = report.get("participants")
        if isinstance(participants, list):
            self.participants = [p for p in participants if isinstance(p, str)]

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
            for key, track in self._tracks.items():
                if key not in seen and not track.ended:
                    self._tracks[key] = track.model_copy(update={"ended": True})
        self.updated_at = now

    def _set_status(self, status: BotStatus, reason: str | None, now: float) -> None:
        previous = self.status
        self.status = status
        self.reason = reason
        self.updated_at = now
        if status == "failed":
            self._log.warning("bot failed: %s", reason)
        else:
            self._log.info("status %s -> %s", previous, status)

    def _bad_report(self, why: str, text: str) -> None:
        self.bad_reports += 1
        self._log.warning("bad report from worker (%s): %.200s", why, text)
