"""Growing delays for the bot's own retries (sans-I/O, time passed in).

Used where the Phoenix client does not already pace the bot: ``join_call``
retries, a rejoin after its endpoint crashed or was replaced, and a channel
the server closed. Retries spaced further apart than ``stable_after`` start
from the first step again, so one failure after a long good call is retried
quickly while a loop slows down.
"""

from __future__ import annotations

from collections.abc import Sequence

STEPS = (0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


class Backoff:
    """The delay before each retry of one recovery path."""

    def __init__(
        self, steps: Sequence[float] = STEPS, stable_after: float = 30.0
    ) -> None:
        self.steps = tuple(steps)
        self.stable_after = stable_after
        self.tries = 0
        self._last: float | None = None

    def next_delay(self, now: float) -> float:
        """Seconds to wait before the retry that is needed at ``now``."""
        if self._last is not None and now - self._last >= self.stable_after:
            self.tries = 0
        self.tries += 1
        self._last = now
        return self.steps[min(self.tries, len(self.steps)) - 1]

    def reset(self) -> None:
        self.tries = 0
        self._last = None
