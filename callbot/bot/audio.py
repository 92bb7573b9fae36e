"""Audio as the voice activity detector wants it: mono 16-bit PCM in fixed frames.

aiortc hands the bot ``av.AudioFrame``s of any layout and rate (its Opus
decoder gives 48 kHz stereo s16 in 20 ms frames; sources give 48 kHz mono).
webrtcvad takes only mono 16-bit frames of 10, 20 or 30 ms at 8, 16, 32 or
48 kHz. :class:`PcmFramer` converts and cuts; the part of a buffer that does not
fill a frame is carried over to the next buffer, never passed on short.
"""

from __future__ import annotations

import logging

import av
import numpy as np
from numpy.typing import NDArray

logger = logging.getLogger(__name__)

VAD_RATES = (8000, 16000, 32000, 48000)
VAD_FRAME_MS = (10, 20, 30)

Pcm = NDArray[np.int16]


def to_mono_int16(samples: NDArray[np.generic], channels: int = 1) -> Pcm:
    """Interleaved samples of ``channels`` channels as mono int16.

    Float input is taken as -1..1 full scale; channels are averaged.
    """
    data = np.asarray(samples).reshape(-1)
    if np.issubdtype(data.dtype, np.floating):
        data = np.clip(data * 32768.0, -32768, 32767)
    if channels > 1:
        usable = len(data) - len(data) % channels
        data = data[:usable].reshape(-1, channels).astype(np.float64).mean(axis=1)
    if data.dtype.kind == "f":
        data = np.round(data)
    return np.asarray(data, dtype=np.int16)


def frame_to_mono(frame: av.AudioFrame) -> Pcm:
    """One ``av.AudioFrame`` (packed or planar, int or float) as mono int16."""
    array = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if frame.format.is_planar:
        # (channels, samples): average the planes.
        mono = array.astype(np.float64).mean(axis=0)
        if frame.format.name.startswith(("flt", "dbl")):
            mono = np.clip(mono * 32768.0, -32768, 32767)
        return np.asarray(np.round(mono), dtype=np.int16)
    packed: NDArray[np.generic] = array.reshape(-1)
    return to_mono_int16(packed, channels)


class Resampler:
    """Stateful rate conversion of mono int16 (sans-I/O).

    Uses a windowed-sinc low-pass then picks samples on the output grid; the
    filter history is kept between calls, so buffer boundaries leave no seams.
    """

    def __init__(self, in_rate: int, out_rate: int, taps: int = 63) -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        # Half a kernel of leading zeros centres the first output on sample 0.
        self._history = np.zeros((taps - 1) // 2, dtype=np.float64)
        self._position = float((taps - 1) // 2)  # next output, index into history
        self._step = in_rate / out_rate
        if out_rate < in_rate:
            cutoff = 0.45 * out_rate / in_rate
            n = np.arange(taps) - (taps - 1) / 2
            kernel = 2 * cutoff * np.sinc(2 * cutoff * n) * np.hamming(taps)
            self._kernel: NDArray[np.float64] | None = kernel / kernel.sum()
        else:
            self._kernel = None
        self._taps = taps

    def process(self, pcm: Pcm) -> Pcm:
        """Convert the next buffer; returns as many samples as are ready."""
        if self.in_rate == self.out_rate:
            return pcm
        signal = np.concatenate([self._history, pcm.astype(np.float64)])
        if self._kernel is not None:
            # Filter only where the whole kernel fits; the tail waits for more.
            if len(signal) < self._taps:
                self._history = signal
                return np.zeros(0, dtype=np.int16)
            filtered = np.convolve(signal, self._kernel, mode="valid")
            offset = (self._taps - 1) / 2  # filtered[i] is centred on signal[i+offset]
        else:
            filtered = signal
            offset = 0.0

        last = len(filtered) - 1
        positions = []
        pos = self._position
        while pos - offset <= last - 1:
            positions.append(pos - offset)
            pos += self._step
        if positions:
            index = np.asarray(positions)
            low = np.floor(index).astype(int)
            frac = index - low
            out = filtered[low] * (1 - frac) + filtered[low + 1] * frac
        else:
            out = np.zeros(0)

        # Keep what the next call still needs: the samples under the kernel
        # around the next output position.
        keep_from = max(0, int(np.floor(pos - offset)) - 1)
        keep_from = min(keep_from, len(signal))
        self._history = signal[keep_from:]
        self._position = pos - keep_from
        return np.asarray(np.clip(np.round(out), -32768, 32767), dtype=np.int16)


class PcmFramer:
    """Cuts any audio into mono int16 frames of ``frame_ms`` at ``rate`` (sans-I/O).

    ``start`` of each frame is its audio time in seconds since the first
    sample pushed, so a detector can run on audio time rather than a clock.
    """

    def __init__(self, rate: int = 16000, frame_ms: int = 10) -> None:
        if rate not in VAD_RATES:
            raise ValueError(f"rate must be one of {VAD_RATES}")
        if frame_ms not in VAD_FRAME_MS:
            raise ValueError(f"frame_ms must be one of {VAD_FRAME_MS}")
        self.rate = rate
        self.frame_ms = frame_ms
        self.frame_samples = rate * frame_ms // 1000
        self._resampler: Resampler | None = None
        self._pending = np.zeros(0, dtype=np.int16)
        self._emitted = 0

    @property
    def time(self) -> float:
        """Audio time in seconds at the end of the last frame returned."""
        return self._emitted / self.rate

    def push_frame(self, frame: av.AudioFrame) -> list[Pcm]:
        """Frames completed by one ``av.AudioFrame``."""
        return self.push(frame_to_mono(frame), frame.sample_rate)

    def push(self, mono: Pcm, sample_rate: int) -> list[Pcm]:
        """Frames completed by a buffer of mono int16 at ``sample_rate``."""
        resampler = self._resampler
        if resampler is None or resampler.in_rate != sample_rate:
            if resampler is not None:
                logger.debug("input rate changed to %d Hz", sample_rate)
            resampler = self._resampler = Resampler(sample_rate, self.rate)
        converted = resampler.process(np.asarray(mono, dtype=np.int16))
        pending = np.concatenate([self._pending, converted])
        count = len(pending) // self.frame_samples
        frames = [
            pending[i * self.frame_samples : (i + 1) * self.frame_samples]
            for i in range(count)
        ]
        self._pending = pending[count * self.frame_samples :]
        self._emitted += count * self.frame_samples
        return frames
