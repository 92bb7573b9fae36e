"""A bot's status machine: starting → connecting → in_call → leaving → left.

Any status that is not final may end in ``failed``; ``connecting`` may repeat
(a bot that lost its call reconnects with a new reason) and an ``in_call`` bot
may go back to ``connecting`` to recover.
"""

from __future__ import annotations

import re

from api.models import BotStatus

TRANSITIONS: dict[str, frozenset[str]] = {
    "starting": frozenset({"connecting", "leaving", "failed"}),
    "connecting": frozenset({"connecting", "in_call", "leaving", "failed"}),
    "in_call": frozenset({"connecting", "leaving", "failed"}),
    "leaving": frozenset({"left", "failed"}),
    "left": frozenset(),
    "failed": frozenset(),
}

# Failure codes the control plane gives itself; a bot's own failure reason is
# used as the code when it is one of the server's reason words ("call_full").
WORKER_EXITED = "worker_exited"
WORKER_KILLED = "worker_killed"
HEARTBEAT_LOST = "heartbeat_lost"
LEAVE_TIMEOUT = "leave_timeout"
KEEPER_LOST = "keeper_lost"
BOT_FAILED = "bot_failed"
NOT_REATTACHED = "not_reattached"
ACTOR_DIED = "actor_died"

_REASON_WORD = re.compile(r"[a-z][a-z0-9_]{0,63}")


class InvalidTransition(ValueError):
    """A status change the machine does not allow."""


def can_transition(current: str, new: str) -> bool:
    """True when a bot in ``current`` may go to ``new``."""
    return new in TRANSITIONS.get(current, frozenset())


def check_transition(current: BotStatus, new: BotStatus) -> None:
    """Raise InvalidTransition unless ``current`` may go to ``new``."""
    if not can_transition(current, new):
        raise InvalidTransition(f"{current} -> {new} is not a valid status change")


def failure_code(reason: str | None) -> str:
    """The stable code for a failure reason a bot reported itself."""
    if reason is not None and _REASON_WORD.fullmatch(reason):
        return reason
    return BOT_FAILED
