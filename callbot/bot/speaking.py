"""Whether a participant is speaking, from the audio itself (sans-I/O).

Two detectors share one interface (:class:`SpeakingDetector`): feed audio,
get the speaking transitions with their audio time.

- :class:`VoiceSpeakingDetector` (the bot's default): webrtcvad on mono
  16-bit frames, a tone guard in front of it, and :class:`SpeakingDebouncer`
  with the browser's timing (about 100 ms to start, 500 ms to stop) on voiced
  frames rather than on loudness.
- :class:`LoudnessSpeakingDetector`: the browser's own SpeakingDetector
  (call-channel.md §6.2), RMS thresholds and timers, so QA can compare both
  on one signal.

Nothing here reads a clock: time is the audio time of the samples fed in.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal, Protocol

import av
import numpy as np
import webrtcvad
from numpy.typing import NDArray

from callbot.bot.audio import Pcm, PcmFramer, frame_to_mono

logger = logging.getLogger(__name__)

DetectorKind = Literal["vad", "loudness"]


@dataclass(frozen=True)
class SpeakingSettings:
    """How speaking is detected.

    Args:
        aggressiveness: webrtcvad mode 0 (least) to 3 (most eager to call
            audio non-speech).
        onset_ms: voiced audio needed before speaking is confirmed.
        release_ms: audio without voice before speaking ends.
        gap_ms: an unvoiced stretch up to this long does not restart the onset.
        rate, frame_ms: what webrtcvad is run at (8/16/32/48 kHz, 10/20/30 ms).
        tone_guard: reject frames whose spectrum is a few pure lines, and
            webrtcvad's own hangover after them (up to ``tone_hold_ms``).
        silence_dbfs: frames quieter than this (RMS) are never voiced.
    """

    detector: DetectorKind = "vad"
    aggressiveness: int = 3
    onset_ms: int = 100
    release_ms: int = 500
    gap_ms: int = 30
    rate: int = 16000
    frame_ms: int = 10
    tone_guard: bool = True
    tone_hold_ms: int = 200
    silence_dbfs: float = -60.0


@dataclass(frozen=True)
class SpeakingChange:
    """A transition of the speaking state at ``time`` seconds of audio."""

    speaking: bool
    time: float


class SpeakingDetector(Protocol):
    """Audio in, speaking transitions out."""

    @property
    def speaking(self) -> bool:
        """The state after the audio fed so far."""
        ...

    def push(self, mono: Pcm, sample_rate: int) -> list[SpeakingChange]:
        """Feed mono int16 samples; the transitions they caused."""
        ...

    def push_frame(self, frame: av.AudioFrame) -> list[SpeakingChange]:
        """Feed one ``av.AudioFrame`` of any layout and rate."""
        ...


def make_detector(settings: SpeakingSettings | None = None) -> SpeakingDetector:
    """The detector ``settings.detector`` names."""
    settings = settings or SpeakingSettings()
    if settings.detector == "loudness":
        return LoudnessSpeakingDetector()
    return VoiceSpeakingDetector(settings)


# ------------------------------------------------------------ tone guard


class ToneGuard:
    """Tells a steady tone from voice: a tone's spectrum is a few pure lines.

    webrtcvad calls a steady tone voiced. Voice spreads its energy over many
    harmonics and formants; a tone (or a chord of up to ``lines`` tones) puts
    nearly all of it under a handful of narrow peaks. The guard looks at the
    last ``window_ms`` of audio through a Hann window and measures the share
    of energy within ``lines`` peaks of ±``peak_hz``.
    """

    def __init__(
        self,
        rate: int,
        *,
        window_ms: int = 32,
        lines: int = 3,
        peak_hz: float = 90.0,
        threshold: float = 0.99,
    ) -> None:
        self.rate = rate
        self.window = rate * window_ms // 1000
        self.lines = lines
        self.threshold = threshold
        self._fft = 1 << int(np.ceil(np.log2(max(2, self.window * 2))))
        self._half = max(1, round(peak_hz * self._fft / rate))
        self._taper = np.hanning(self.window)

    def line_share(self, recent: Pcm) -> float:
        """Share of the energy of ``recent`` (its last window) in the top lines."""
        samples = np.asarray(recent[-self.window :], dtype=np.float64)
        if len(samples) < self.window:
            return 0.0
        power = np.abs(np.fft.rfft(samples * self._taper, self._fft)) ** 2
        total = float(power.sum())
        if total <= 0.0:
            return 0.0
        taken = 0.0
        for _ in range(self.lines):
            k = int(power.argmax())
            low, high = max(0, k - self._half), k + self._half + 1
            taken += float(power[low:high].sum())
            power[low:high] = 0.0
        return taken / total

    def is_tonal(self, recent: Pcm) -> bool:
        return self.line_share(recent) >= self.threshold


# ------------------------------------------------------------ debouncer


class SpeakingDebouncer:
    """Voiced/unvoiced frames to a speaking state with onset and release times.

    Speaking starts once voiced frames have lasted ``onset`` seconds (gaps up
    to ``gap`` seconds allowed) and ends ``release`` seconds after the last
    voiced frame. Times are the frames' end times in seconds.
    """

    def __init__(
        self, onset: float = 0.1, release: float = 0.5, gap: float = 0.03
    ) -> None:
        self.onset = onset
        self.release = release
        self.gap = gap
        self.speaking = False
        self._onset_start: float | None = None
        self._last_voiced: float | None = None

    def update(self, voiced: bool, start: float, end: float) -> bool | None:
        """One frame from ``start`` to ``end``; the new state if it changed."""
        if voiced:
            if self._onset_start is None or (
                self._last_voiced is not None and start - self._last_voiced > self.gap
            ):
                self._onset_start = start
            self._last_voiced = end
        elif self._onset_start is not None and (
            self._last_voiced is None or end - self._last_voiced > self.gap
        ):
            self._onset_start = None

        if not self.speaking:
            if (
                voiced
                and self._onset_start is not None
                and end - self._onset_start >= self.onset - 1e-9
            ):
                self.speaking = True
                return True
            return None
        if self._last_voiced is not None and end - self._last_voiced >= (
            self.release - 1e-9
        ):
            self.speaking = False
            self._onset_start = None
            return False
        return None

    def reset(self) -> None:
        self.speaking = False
        self._onset_start = None
        self._last_voiced = None


# ------------------------------------------------------------ detectors


class VoiceSpeakingDetector:
    """webrtcvad with a tone guard and a :class:`SpeakingDebouncer`."""

    def __init__(self, settings: SpeakingSettings | None = None) -> None:
        s = settings or SpeakingSettings()
        if not 0 <= s.aggressiveness <= 3:
            raise ValueError("aggressiveness must be 0..3")
        self.settings = s
        self.framer = PcmFramer(s.rate, s.frame_ms)
        self.debouncer = SpeakingDebouncer(
            s.onset_ms / 1000, s.release_ms / 1000, s.gap_ms / 1000
        )
        self.guard = ToneGuard(s.rate) if s.tone_guard else None
        self._vad = webrtcvad.Vad(s.aggressiveness)
        keep = self.guard.window if self.guard is not None else 0
        self._recent: NDArray[np.int16] = np.zeros(keep, dtype=np.int16)
        self._silence = 32768.0 * 10 ** (s.silence_dbfs / 20)
        # Frames left in which a voiced verdict is taken for the hangover of a
        # tone that just ended (webrtcvad keeps saying "voiced" for ~100 ms).
        self._tone_hold = 0
        self._tone_hold_frames = s.tone_hold_ms // s.frame_ms
        self.frames = 0
        self.voiced_frames = 0
        self.tonal_frames = 0

    @property
    def speaking(self) -> bool:
        return self.debouncer.speaking

    def push_frame(self, frame: av.AudioFrame) -> list[SpeakingChange]:
        return self.push(frame_to_mono(frame), frame.sample_rate)

    def push(self, mono: Pcm, sample_rate: int) -> list[SpeakingChange]:
        changes: list[SpeakingChange] = []
        step = self.framer.frame_samples / self.framer.rate
        frames = self.framer.push(mono, sample_rate)
        end = self.framer.time - step * len(frames)
        for pcm in frames:
            start, end = end, end + step
            voiced = self.is_voiced(pcm)
            state = self.debouncer.update(voiced, start, end)
            if state is not None:
                changes.append(SpeakingChange(state, end))
        return changes

    def is_voiced(self, pcm: Pcm) -> bool:
        """webrtcvad's verdict on one frame, unless the tone guard vetoes it."""
        self.frames += 1
        voiced = bool(self._vad.is_speech(pcm.tobytes(), self.settings.rate))
        if self.guard is not None:
            self._recent = np.concatenate([self._recent, pcm])[-self.guard.window :]
            if voiced and self.guard.is_tonal(self._recent):
                self.tonal_frames += 1
                self._tone_hold = self._tone_hold_frames
                voiced = False
            elif not voiced:
                self._tone_hold = 0
            elif self._tone_hold > 0:
                self._tone_hold -= 1
                voiced = False
        if voiced:
            rms = float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))
            voiced = rms >= self._silence
        self.voiced_frames += voiced
        return voiced


class LoudnessSpeakingDetector:
    """The browser's SpeakingDetector (call-channel.md §6.2) on audio time.

    Every ``interval`` seconds the RMS of the last 256 samples (at 48 kHz;
    the same 5.3 ms at other rates) is compared with ``start_level`` and
    ``stop_level``; a pending 100 ms start timer fires even if the level
    dropped meanwhile, a pending 500 ms stop timer is cancelled by any frame
    at or above ``stop_level``.
    """

    def __init__(
        self,
        *,
        start_level: float = 0.01,
        stop_level: float = 0.005,
        onset: float = 0.1,
        release: float = 0.5,
        interval: float = 1 / 60,
    ) -> None:
        self.start_level = start_level
        self.stop_level = stop_level
        self.onset = onset
        self.release = release
        self.interval = interval
        self.speaking = False
        self.level = 0.0
        self._rate: int | None = None
        self._window = 256
        self._recent = np.zeros(0, dtype=np.float64)
        self._samples = 0
        self._evals = 1  # index of the next evaluation
        self._start_timer: float | None = None
        self._stop_timer: float | None = None

    def push_frame(self, frame: av.AudioFrame) -> list[SpeakingChange]:
        return self.push(frame_to_mono(frame), frame.sample_rate)

    def push(self, mono: Pcm, sample_rate: int) -> list[SpeakingChange]:
        if self._rate != sample_rate:
            self._rate = sample_rate
            self._window = max(1, round(256 * sample_rate / 48000))
        changes: list[SpeakingChange] = []
        data = np.asarray(mono, dtype=np.float64) / 32768.0
        # Evaluate at every interval boundary inside this buffer, on the
        # samples up to that boundary.
        base = self._samples
        for_eval = np.concatenate([self._recent, data])
        offset = len(self._recent)
        while True:
            at = self._evals * self.interval
            boundary = round(at * sample_rate) - base
            if boundary > len(data):
                break
            upto = offset + boundary
            window = for_eval[max(0, upto - self._window) : upto]
            level = float(np.sqrt(np.mean(window**2))) if len(window) else 0.0
            change = self.evaluate(level, at)
            if change is not None:
                changes.append(change)
            self._evals += 1
        self._samples += len(data)
        self._recent = for_eval[-self._window :]
        return changes

    def evaluate(self, level: float, now: float) -> SpeakingChange | None:
        """One animation-frame evaluation at ``now`` with RMS ``level`` (0..1)."""
        self.level = level
        change = self._fire_timers(now)
        if not self.speaking:
            if level > self.start_level and self._start_timer is None:
                self._start_timer = now + self.onset
        elif level < self.stop_level:
            if self._stop_timer is None:
                self._stop_timer = now + self.release
        else:
            self._stop_timer = None
        return change

    def _fire_timers(self, now: float) -> SpeakingChange | None:
        if self._start_timer is not None and now >= self._start_timer - 1e-9:
            at = self._start_timer
            self._start_timer = None
            if not self.speaking:
                self.speaking = True
                return SpeakingChange(True, at)
        if self._stop_timer is not None and now >= self._stop_timer - 1e-9:
            at = self._stop_timer
            self._stop_timer = None
            if self.speaking:
                self.speaking = False
                return SpeakingChange(False, at)
        return None
