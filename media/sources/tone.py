"""A tone as an audio track: 48 kHz mono 20 ms frames, the Opus encoder's input."""

from __future__ import annotations

import abc
import asyncio
import fractions
import time
from collections.abc import Callable

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from media.markers.beeps import BEEP_FREQUENCY, beep_mask

SAMPLE_RATE = 48_000
FRAME_SAMPLES = 960  # 20 ms
AUDIO_TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)


def mono_frame(chunk: np.ndarray, index: int) -> av.AudioFrame:
    """Frame ``index`` of a 20 ms sequence, from ``FRAME_SAMPLES`` s16 samples."""
    frame = av.AudioFrame.from_ndarray(
        chunk.reshape(1, -1), format="s16", layout="mono"
    )
    frame.sample_rate = SAMPLE_RATE
    frame.pts = index * FRAME_SAMPLES
    frame.time_base = AUDIO_TIME_BASE
    return frame


class PacedAudioTrack(MediaStreamTrack):
    """An audio track whose 20 ms frames are paced in real time on ``clock``.

    A source more than a second late starts its pacing over rather than
    bursting to catch up. Subclasses make frame ``index`` in :meth:`next_frame`.
    """

    kind = "audio"

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.frames = 0
        self._clock = clock
        self._start: float | None = None

    @abc.abstractmethod
    def next_frame(self, index: int) -> av.AudioFrame:
        """Frame ``index`` of the track, made when it is due."""

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = self._clock()
        index = self.frames
        delay = self._start + index * FRAME_SAMPLES / SAMPLE_RATE - self._clock()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -1.0:
            self._start = self._clock() - index * FRAME_SAMPLES / SAMPLE_RATE
        self.frames += 1
        return self.next_frame(index)


class ToneTrack(PacedAudioTrack):
    """A sine tone, ``amplitude`` of full scale; one second of samples is cached.

    With ``beeps`` the tone changes to 1 kHz, at the same loudness, for the
    first 100 ms of every wall-clock second, aligned with the pattern's
    flashes (:mod:`media.markers.beeps`).
    """

    kind = "audio"

    def __init__(
        self,
        frequency: float = 440.0,
        amplitude: float = 0.2,
        *,
        clock: Callable[[], float] = time.monotonic,
        beeps: bool = True,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(clock)
        # A whole second holds a whole number of periods for integer frequencies.
        t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
        wave = amplitude * np.sin(2 * np.pi * frequency * t)
        self._samples = (wave * 32767).astype(np.int16)
        beep = amplitude * np.sin(2 * np.pi * BEEP_FREQUENCY * t)
        self._beep = (beep * 32767).astype(np.int16)
        self.beeps = beeps
        self._wall_clock = wall_clock

    def frame(self, index: int, wall_clock: float | None = None) -> av.AudioFrame:
        """Audio frame ``index``, beeping if it is sent at ``wall_clock`` s (pure)."""
        start = (index * FRAME_SAMPLES) % SAMPLE_RATE
        chunk = self._samples[start : start + FRAME_SAMPLES]
        if self.beeps and wall_clock is not None:
            mask = beep_mask(wall_clock, FRAME_SAMPLES, SAMPLE_RATE)
            if mask.any():
                chunk = np.where(mask, self._beep[start : start + FRAME_SAMPLES], chunk)
        return mono_frame(chunk, index)

    def next_frame(self, index: int) -> av.AudioFrame:
        return self.frame(index, self._wall_clock())
