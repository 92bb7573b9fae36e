"""Beeps in the test tone, aligned with the pattern's flashes, and their detector.

The tone source plays :data:`BASE_FREQUENCY` and switches to
:data:`BEEP_FREQUENCY` for the first :data:`~media.markers.framecode.FLASH_SECONDS`
of every wall-clock second, at the same moments the pattern's flash block is
white. The loudness stays the same, so a beep changes no speaking decision.

:class:`BeepDetector` finds beep onsets in received audio: the power at
the beep frequency against the power of the whole block, in 10 ms blocks.
It takes the arrival time of each buffer, never a clock.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from media.markers.framecode import FLASH_SECONDS, PERIOD_SECONDS, is_flash

BASE_FREQUENCY = 440.0
BEEP_FREQUENCY = 1000.0
BLOCK_SECONDS = 0.01
# A block is a beep when the beep tone holds this share of its power.
BEEP_SHARE = 0.5
# Quieter blocks (mean square of int16 samples) are never a beep.
MIN_POWER = 30.0**2
# An onset needs this much beep-free audio before it.
REARM_SECONDS = 0.5
# How early an onset may be found (block granularity, float rounding).
EARLY_SECONDS = 0.02


def beep_mask(wall_start: float, samples: int, sample_rate: int) -> NDArray[np.bool_]:
    """Which of ``samples`` samples starting at ``wall_start`` s are in a beep."""
    times = wall_start + np.arange(samples) / sample_rate
    return np.asarray((times % PERIOD_SECONDS) < FLASH_SECONDS)


# Known limit: audio latency over 980 ms is attributed to the next beep.
def nominal_beep_time(onset: float) -> float:
    """The wall-clock second a beep heard at ``onset`` was sent at.

    Assumes the one-way delay is between -20 ms (the onset's block timing) and
    980 ms: the beep sent at the latest whole second not after the onset.
    """
    return math.floor((onset + EARLY_SECONDS) / PERIOD_SECONDS) * PERIOD_SECONDS


def beeping(wall_clock: float) -> bool:
    """Whether the tone beeps at ``wall_clock`` seconds (the flash is on)."""
    return is_flash(wall_clock)


def tone_power(block: NDArray[np.float64], frequency: float, rate: int) -> float:
    """Mean-square power of the ``frequency`` component of ``block`` (one DFT bin)."""
    n = len(block)
    phase = np.exp(-2j * np.pi * frequency * np.arange(n) / rate)
    component = complex(np.dot(block, phase))
    # A sine of amplitude A gives |X| = A n / 2; its mean square is A^2 / 2.
    return 2.0 * abs(component) ** 2 / (n * n)


class BeepDetector:
    """Beep onsets in mono int16 audio, timed by the buffers' arrival times."""

    def __init__(self, frequency: float = BEEP_FREQUENCY) -> None:
        self.frequency = frequency
        self._rate = 0
        self._pending = np.zeros(0, dtype=np.float64)
        self._pending_start = 0.0
        self._last_beep: float | None = None
        self.blocks = 0
        self.beep_blocks = 0

    def push(
        self, mono: NDArray[np.int16], sample_rate: int, arrival: float
    ) -> list[float]:
        """Feed samples whose first one arrived at ``arrival``; the onsets found."""
        if sample_rate != self._rate:
            self._rate = sample_rate
            self._pending = np.zeros(0, dtype=np.float64)
        # Each buffer re-times what is pending, so gaps in the audio (loss,
        # a paused track) do not shift the onsets found after them.
        self._pending_start = arrival - len(self._pending) / sample_rate
        self._pending = np.concatenate([self._pending, mono.astype(np.float64)])
        block = max(1, int(sample_rate * BLOCK_SECONDS))
        onsets: list[float] = []
        while len(self._pending) >= block:
            chunk, self._pending = self._pending[:block], self._pending[block:]
            start = self._pending_start
            self._pending_start += block / sample_rate
            self.blocks += 1
            total = float(np.mean(chunk * chunk))
            if total < MIN_POWER:
                continue
            if tone_power(chunk, self.frequency, sample_rate) < BEEP_SHARE * total:
                continue
            self.beep_blocks += 1
            last, self._last_beep = self._last_beep, start
            if last is None or start - last >= REARM_SECONDS:
                onsets.append(start)
        return onsets
