"""A seeded synthetic physiological sensor: heart rate, ECG, respiration.

Beats are generated one by one: beat ``i`` has heart rate ``h_i`` and comes
``60 / h_i`` seconds after beat ``i - 1``, so the R-R intervals of the ECG are
exactly those the heart rate reports. The heart rate varies by a slow
mean-reverting drift and by respiratory sinus arrhythmia. The ECG is a sum of
Gaussian P, Q, R, S and T waves per beat, P and T placed relative to the R-R
interval. Time is passed in; nothing reads a clock.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from callbot.sensors.measurements import Measurement, Scalar, Waveform

logger = logging.getLogger(__name__)

# (offset from R in s, width in s, amplitude in mV); P and T offsets and
# widths scale with sqrt(R-R / 1 s), the QRS complex does not.
_WAVES = (
    (-0.20, 0.025, 0.15, True),  # P
    (-0.035, 0.010, -0.12, False),  # Q
    (0.0, 0.010, 1.2, False),  # R
    (0.035, 0.012, -0.25, False),  # S
    (0.30, 0.055, 0.30, True),  # T
)
# How far a beat's waves reach either side of its R peak, in seconds.
_REACH_BEFORE = 0.45
_REACH_AFTER = 0.75
# Beat-to-beat mean reversion of the heart-rate drift.
_DRIFT_THETA = 0.05


class SyntheticConfig(BaseModel):
    """What the synthetic sensor produces."""

    model_config = ConfigDict(frozen=True)

    sensor_id: str = "synthetic-1"
    seed: int = 0
    heart_rate_bpm: float = Field(72.0, ge=30.0, le=200.0)
    heart_rate_drift_bpm: float = Field(3.0, ge=0.0)
    rsa_bpm: float = Field(2.0, ge=0.0)
    ecg_rate_hz: int = Field(250, ge=250, le=500)
    ecg_noise_mv: float = Field(0.01, ge=0.0)
    respiration_bpm: float = Field(15.0, gt=0.0, le=60.0)
    respiration_rate_hz: int = Field(25, ge=1, le=200)
    respiration_noise: float = Field(0.01, ge=0.0)
    heartrate_attribute: str = "heartrate"
    ecg_attribute: str = "ecg"
    respiration_attribute: str = "respiration"


@dataclass(frozen=True, slots=True)
class Beat:
    """One heartbeat: R peak time in seconds since the start, and its rate."""

    r: float
    heart_rate: float


class SyntheticSensor:
    """Produces measurements up to the time it is advanced to."""

    def __init__(self, config: SyntheticConfig, start_ms: int) -> None:
        self.config = config
        self.start_ms = start_ms
        beat_seed, ecg_seed, resp_seed = np.random.SeedSequence(config.seed).spawn(3)
        self._beat_rng = np.random.default_rng(beat_seed)
        self._ecg_rng = np.random.default_rng(ecg_seed)
        self._resp_rng = np.random.default_rng(resp_seed)

        # Breathing: a base rate with a slow, seeded modulation of phase.
        self._resp_phase0 = float(self._resp_rng.uniform(0.0, 2 * math.pi))
        self._resp_wobble = float(self._resp_rng.uniform(0.5, 1.5))

        first_rr = 60.0 / config.heart_rate_bpm
        self._drift = 0.0
        self._beats: list[Beat] = [
            Beat(-float(self._beat_rng.uniform(0.0, first_rr)), config.heart_rate_bpm)
        ]
        self._next_ecg = 0
        self._next_resp = 0
        self._last_reported = 0.0
        self._reported_any = False
        self.beats_emitted: list[Beat] = []

    # -- respiration ---------------------------------------------------

    def respiration_phase(self, t: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Breathing phase in radians at times ``t`` (s since the start)."""
        f = self.config.respiration_bpm / 60.0
        wobble = self._resp_wobble * np.sin(2 * math.pi * t / 47.0)
        return 2 * math.pi * f * t + self._resp_phase0 + wobble

    # -- beats -----------------------------------------------------------

    def _next_beat(self) -> Beat:
        c = self.config
        previous = self._beats[-1]
        theta = _DRIFT_THETA
        self._drift = self._drift * (1 - theta) + c.heart_rate_drift_bpm * math.sqrt(
            2 * theta
        ) * float(self._beat_rng.standard_normal())
        phase = float(self.respiration_phase(np.array([previous.r]))[0])
        rate = c.heart_rate_bpm + self._drift + c.rsa_bpm * math.sin(phase)
        # The reported rate has one decimal; the interval follows it exactly.
        rate = round(min(max(rate, 30.0), 220.0), 1)
        return Beat(previous.r + 60.0 / rate, rate)

    def _extend_beats(self, until: float) -> None:
        while self._beats[-1].r < until + _REACH_BEFORE:
            self._beats.append(self._next_beat())

    def _forget_beats(self, before: float) -> None:
        keep = 0
        while (
            keep < len(self._beats) - 2
            and self._beats[keep + 1].r < before - _REACH_AFTER
        ):
            keep += 1
        del self._beats[:keep]

    # -- ECG ---------------------------------------------------------------

    def ecg_at(self, t: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Noise-free ECG in mV at times ``t`` (s), from the beats generated."""
        out = np.zeros_like(t)
        for i, beat in enumerate(self._beats):
            rr = beat.r - self._beats[i - 1].r if i else 60.0 / beat.heart_rate
            scale = math.sqrt(rr)
            near = (t > beat.r - _REACH_BEFORE) & (t < beat.r + _REACH_AFTER)
            if not near.any():
                continue
            dt = t[near] - beat.r
            wave = np.zeros_like(dt)
            for offset, width, amplitude, scaled in _WAVES:
                mu = offset * scale if scaled else offset
                sigma = width * scale if scaled else width
                wave += amplitude * np.exp(-((dt - mu) ** 2) / (2 * sigma * sigma))
            out[near] += wave
        # Baseline wander with breathing.
        out += 0.05 * np.sin(self.respiration_phase(t))
        return out

    # -- advancing -----------------------------------------------------------

    def _sample_times(
        self, rate: int, first: int, now_ms: int
    ) -> npt.NDArray[np.int64]:
        # Sample k is at start + floor(k * 1000 / rate) ms.
        last = ((now_ms - self.start_ms) * rate) // 1000
        if last < first:
            return np.zeros(0, dtype=np.int64)
        k = np.arange(first, last + 1, dtype=np.int64)
        return (k * 1000) // rate

    def advance(self, now_ms: int) -> list[Measurement]:
        """Everything measured after the previous call and up to ``now_ms``."""
        c = self.config
        out: list[Measurement] = []
        until = (now_ms - self.start_ms) / 1000.0
        self._extend_beats(until)

        # Heart rate, one measurement per beat at its R peak.
        for beat in self._beats:
            if beat.r < 0.0 or beat.r > until:
                continue
            if self._reported_any and beat.r <= self._last_reported:
                continue
            ts = self.start_ms + round(beat.r * 1000.0)
            out.append(Scalar(c.sensor_id, c.heartrate_attribute, beat.heart_rate, ts))
            self._last_reported = beat.r
            self._reported_any = True
            self.beats_emitted.append(beat)

        offsets = self._sample_times(c.ecg_rate_hz, self._next_ecg, now_ms)
        if offsets.size:
            t = offsets / 1000.0
            ecg = self.ecg_at(t) + c.ecg_noise_mv * self._ecg_rng.standard_normal(
                t.shape[0]
            )
            self._next_ecg += offsets.size
            out.append(
                Waveform(
                    c.sensor_id,
                    c.ecg_attribute,
                    tuple(np.round(ecg, 4).tolist()),
                    tuple((offsets + self.start_ms).tolist()),
                )
            )

        offsets = self._sample_times(c.respiration_rate_hz, self._next_resp, now_ms)
        if offsets.size:
            t = offsets / 1000.0
            resp = -np.cos(
                self.respiration_phase(t)
            ) + c.respiration_noise * self._resp_rng.standard_normal(t.shape[0])
            self._next_resp += offsets.size
            out.append(
                Waveform(
                    c.sensor_id,
                    c.respiration_attribute,
                    tuple(np.round(resp, 4).tolist()),
                    tuple((offsets + self.start_ms).tolist()),
                )
            )

        self._forget_beats(until)
        return out
