"""All participants' audio mixed into one stream, pulled at the composite's pace.

Sans-I/O: each source pushes 48 kHz stereo int16 samples as they arrive and
the composite pulls exactly as many samples as its clock has advanced. A
source that has not delivered enough is padded with silence; one that runs
ahead is trimmed to ``max_buffer`` seconds, dropping its oldest samples, so
a burst never turns into lasting delay.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import av
import numpy as np
from numpy.typing import NDArray

logger = logging.getLogger(__name__)

SAMPLE_RATE = 48_000
CHANNELS = 2

Samples = NDArray[np.int16]
"""Interleaved-free PCM: shape (n, 2), int16."""


def silence(count: int) -> Samples:
    return np.zeros((count, CHANNELS), dtype=np.int16)


@dataclass
class _Source:
    chunks: list[Samples] = field(default_factory=list)
    buffered: int = 0
    started: bool = False
    resampler: av.AudioResampler | None = None


class AudioMixer:
    """Mixes sources by sample count; the caller's pulls set the pace.

    Args:
        prebuffer: seconds a source must have buffered before it is first
            mixed, to absorb the jitter of its arrivals.
        max_buffer: seconds a source may hold before its oldest samples go.
    """

    def __init__(self, *, prebuffer: float = 0.06, max_buffer: float = 0.3) -> None:
        self.prebuffer = round(prebuffer * SAMPLE_RATE)
        self.max_buffer = round(max_buffer * SAMPLE_RATE)
        self.dropped = 0
        self.underrun = 0
        self._sources: dict[str, _Source] = {}

    def push(self, source: str, samples: Samples) -> None:
        """Add ``samples`` (n, 2) int16 at 48 kHz of ``source``."""
        state = self._sources.setdefault(source, _Source())
        if len(samples) == 0:
            return
        state.chunks.append(samples)
        state.buffered += len(samples)
        excess = state.buffered - self.max_buffer
        if excess > 0:
            self._discard(state, excess)
            self.dropped += excess

    def push_frame(self, source: str, frame: av.AudioFrame) -> None:
        """Add a decoded frame of any format, rate and layout."""
        state = self._sources.setdefault(source, _Source())
        if state.resampler is None:
            state.resampler = av.AudioResampler(
                format="s16", layout="stereo", rate=SAMPLE_RATE
            )
        for out in state.resampler.resample(frame):
            self.push(source, to_samples(out))

    def remove(self, source: str) -> None:
        self._sources.pop(source, None)

    def buffered(self, source: str) -> float:
        """Seconds of ``source`` waiting to be mixed."""
        state = self._sources.get(source)
        return state.buffered / SAMPLE_RATE if state else 0.0

    def pull(self, count: int) -> Samples:
        """The next ``count`` samples of the mix (silence where nothing came)."""
        mix = np.zeros((count, CHANNELS), dtype=np.int32)
        for state in self._sources.values():
            if not state.started:
                if state.buffered < self.prebuffer:
                    continue
                state.started = True
            taken = self._take(state, count)
            mix[: len(taken)] += taken
            if len(taken) < count:
                self.underrun += count - len(taken)
        return np.clip(mix, -32768, 32767).astype(np.int16)

    @staticmethod
    def _take(state: _Source, count: int) -> Samples:
        parts: list[Samples] = []
        needed = count
        while needed > 0 and state.chunks:
            chunk = state.chunks[0]
            if len(chunk) <= needed:
                parts.append(chunk)
                state.chunks.pop(0)
                needed -= len(chunk)
            else:
                parts.append(chunk[:needed])
                state.chunks[0] = chunk[needed:]
                needed = 0
        taken = count - needed
        state.buffered -= taken
        if taken == 0:
            return silence(0)
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    @staticmethod
    def _discard(state: _Source, count: int) -> None:
        AudioMixer._take(state, count)


def to_samples(frame: av.AudioFrame) -> Samples:
    """A packed s16 stereo frame as (n, 2) int16."""
    data = frame.to_ndarray()
    return np.asarray(data, dtype=np.int16).reshape(-1, CHANNELS)
