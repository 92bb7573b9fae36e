"""When a bot should leave on its own: max duration, alone, nobody joined.

Sans-I/O: given the record and the time, says whether and why to leave.
"""

from __future__ import annotations

from dataclasses import dataclass

from api.record import BotRecord


@dataclass(frozen=True)
class LeaveRules:
    """Seconds; None turns a rule off."""

    max_duration: float | None = None
    alone_timeout: float | None = None
    nobody_joined_timeout: float | None = None


class LeaveWatch:
    """Follows one bot's roster over time and applies its leave rules."""

    def __init__(self, rules: LeaveRules) -> None:
        self.rules = rules
        self._alone_since: float | None = None
        self._anyone_joined = False

    def check(self, record: BotRecord, now: float) -> str | None:
        """The reason to leave now, or None."""
        rules = self.rules
        if rules.max_duration is not None and now - record.created_at >= (
            rules.max_duration
        ):
            return "max_duration"
        if record.status != "in_call" or record.in_call_at is None:
            return None

        if record.participants:
            self._anyone_joined = True
            self._alone_since = None
        elif self._alone_since is None:
            self._alone_since = now

        if (
            rules.nobody_joined_timeout is not None
            and not self._anyone_joined
            and now - record.in_call_at >= rules.nobody_joined_timeout
        ):
            return "nobody_joined"
        if (
            rules.alone_timeout is not None
            and self._anyone_joined
            and self._alone_since is not None
            and now - self._alone_since >= rules.alone_timeout
        ):
            return "alone"
        return None
