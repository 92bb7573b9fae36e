"""Time for the server: monotonic milliseconds, UTC now and timers.

The CallServer's tier tick, its inactivity stop and the socket idle timeout
all run on a :class:`Clock`, so that tests can drive them with a
:class:`ManualClock` instead of sleeping.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import UTC, datetime, timedelta


class Timer(ABC):
    """A scheduled callback that can be cancelled."""

    @abstractmethod
    def cancel(self) -> None:
        """Prevent the callback from running; harmless if it already ran."""


class Clock(ABC):
    """Monotonic milliseconds, wall-clock UTC and one-shot timers."""

    @abstractmethod
    def monotonic_ms(self) -> int:
        """Milliseconds on a clock that never goes backwards."""

    @abstractmethod
    def utc_now(self) -> datetime:
        """The current UTC time (timezone-aware)."""

    @abstractmethod
    def call_later(self, delay_ms: int, callback: Callable[[], None]) -> Timer:
        """Run ``callback`` once, ``delay_ms`` milliseconds from now."""


class _AsyncioTimer(Timer):
    def __init__(self, handle: asyncio.TimerHandle) -> None:
        self._handle = handle

    def cancel(self) -> None:
        self._handle.cancel()


class SystemClock(Clock):
    """The real clock; timers run on the running asyncio loop."""

    def monotonic_ms(self) -> int:
        return time.monotonic_ns() // 1_000_000

    def utc_now(self) -> datetime:
        return datetime.now(UTC)

    def call_later(self, delay_ms: int, callback: Callable[[], None]) -> Timer:
        loop = asyncio.get_running_loop()
        return _AsyncioTimer(loop.call_later(max(delay_ms, 0) / 1000, callback))


class _ManualTimer(Timer):
    def __init__(self, due_ms: int, seq: int, callback: Callable[[], None]) -> None:
        self.due_ms = due_ms
        self.seq = seq
        self.callback = callback
        self.cancelled = False

    def __lt__(self, other: _ManualTimer) -> bool:
        return (self.due_ms, self.seq) < (other.due_ms, other.seq)

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock(Clock):
    """A clock that moves only when told to; ``advance`` fires due timers in order."""

    def __init__(self, start_ms: int = 0, start_utc: datetime | None = None) -> None:
        self._now_ms = start_ms
        self._start_ms = start_ms
        self._start_utc = start_utc or datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
        self._timers: list[_ManualTimer] = []
        self._seq = itertools.count()

    def monotonic_ms(self) -> int:
        return self._now_ms

    def utc_now(self) -> datetime:
        return self._start_utc + timedelta(milliseconds=self._now_ms - self._start_ms)

    def call_later(self, delay_ms: int, callback: Callable[[], None]) -> Timer:
        timer = _ManualTimer(self._now_ms + max(delay_ms, 0), next(self._seq), callback)
        heapq.heappush(self._timers, timer)
        return timer

    def advance(self, ms: int) -> None:
        """Move time forward by ``ms``, running every timer that falls due.

        Each timer runs with the clock set to its due time, so a timer armed
        by a callback is placed relative to that moment, as on a real clock.
        """
        if ms < 0:
            raise ValueError("a clock cannot go backwards")
        target = self._now_ms + ms
        while self._timers and self._timers[0].due_ms <= target:
            timer = heapq.heappop(self._timers)
            if timer.cancelled:
                continue
            self._now_ms = timer.due_ms
            timer.callback()
        self._now_ms = target

    @property
    def pending(self) -> int:
        """How many timers are armed and not cancelled."""
        return sum(1 for t in self._timers if not t.cancelled)
