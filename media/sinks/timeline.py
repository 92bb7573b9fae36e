"""RTP timestamps of one track turned into a strictly increasing timeline.

Sans-I/O: each frame's 32-bit RTP timestamp and its arrival time (``now``, in
seconds on any monotonic clock) go in; a presentation time in milliseconds
since the track's first frame comes out.
"""

from __future__ import annotations

from dataclasses import dataclass

_WRAP = 1 << 32
_HALF = 1 << 31


@dataclass
class TimelineStats:
    """What the timeline had to repair."""

    wraps: int = 0
    non_increasing: int = 0
    resets: int = 0


class RtpTimeline:
    """Unwraps 32-bit RTP timestamps and keeps the result strictly increasing.

    A decrease across the 2^32 boundary is a wrap, any other step is taken as
    a signed 32-bit difference, so a reordered or repeated frame stays local.
    Gaps (loss, silence) stay gaps. A forward jump far larger than the time
    that passed between arrivals is a timestamp reset by the sender: the
    timeline then continues from the arrival time instead.
    """

    def __init__(self, clock_rate: int, *, max_jump: float = 10.0) -> None:
        self.clock_rate = clock_rate
        self.max_jump = max_jump
        self.stats = TimelineStats()
        self._last_rtp: int | None = None
        self._extended = 0  # unwrapped timestamp of the last frame, in ticks
        self._first_extended = 0
        self._last_now = 0.0
        self._last_ms = -1

    @property
    def started(self) -> bool:
        return self._last_rtp is not None

    def position(self, timestamp: int, now: float) -> int:
        """Milliseconds since the first frame, strictly above the previous one."""
        timestamp &= 0xFFFFFFFF
        if self._last_rtp is None:
            self._last_rtp = timestamp
            self._extended = self._first_extended = timestamp
            self._last_now = now
            self._last_ms = 0
            return 0

        step = (timestamp - self._last_rtp) % _WRAP
        if step >= _HALF:
            step -= _WRAP
        if step > 0 and timestamp < self._last_rtp:
            self.stats.wraps += 1
        elapsed = max(now - self._last_now, 0.0)
        if step / self.clock_rate > elapsed + self.max_jump:
            # The sender restarted its clock: follow the arrival time.
            self.stats.resets += 1
            step = round(elapsed * self.clock_rate)
        self._last_rtp = timestamp
        self._last_now = now
        self._extended += step

        ms = (self._extended - self._first_extended) * 1000 // self.clock_rate
        if ms <= self._last_ms:
            self.stats.non_increasing += 1
            ms = self._last_ms + 1
        self._last_ms = ms
        return ms
