"""Test signals for the speaking detectors: real espeak speech, tones, noise."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

DATA = Path(__file__).resolve().parent.parent / "data"
SPEECH_FILES = ("speech-en-us-16k.wav", "speech-en-gb-f-16k.wav")


def read_wav(name: str) -> tuple[NDArray[np.int16], int]:
    """A committed espeak-ng clip (mono 16-bit) and its rate."""
    with wave.open(str(DATA / name)) as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
        return samples.copy(), w.getframerate()


def dbfs_amplitude(dbfs: float) -> float:
    """Peak amplitude (of 32767) of a sine whose RMS is ``dbfs``."""
    return float(10 ** (dbfs / 20) * 32768 * np.sqrt(2))


def tone(freq: float, dbfs: float, seconds: float, rate: int) -> NDArray[np.int16]:
    t = np.arange(int(seconds * rate)) / rate
    wave_ = dbfs_amplitude(dbfs) * np.sin(2 * np.pi * freq * t)
    return np.asarray(np.clip(wave_, -32768, 32767), dtype=np.int16)


def beeps(freq: float, dbfs: float, seconds: float, rate: int) -> NDArray[np.int16]:
    """A 100 ms beep at the start of every second, silence between."""
    signal = tone(freq, dbfs, seconds, rate)
    signal[(np.arange(len(signal)) % rate) >= rate // 10] = 0
    return signal


def pink_noise(
    dbfs: float, seconds: float, rate: int, seed: int = 7
) -> NDArray[np.int16]:
    """Pink (1/f power) noise with RMS ``dbfs``."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    k = np.arange(len(spectrum), dtype=np.float64)
    k[0] = 1.0
    noise = np.fft.irfft(spectrum / np.sqrt(k), n)
    noise *= 10 ** (dbfs / 20) * 32768 / np.sqrt(np.mean(noise**2))
    return np.asarray(np.clip(noise, -32768, 32767), dtype=np.int16)


def speech_start(samples: NDArray[np.int16], rate: int, dbfs: float = -40.0) -> float:
    """Seconds to the first sample louder than ``dbfs`` (peak)."""
    loud = np.abs(samples.astype(np.float64)) > 32768 * 10 ** (dbfs / 20)
    return float(np.argmax(loud)) / rate


def speech_end(samples: NDArray[np.int16], rate: int, dbfs: float = -40.0) -> float:
    loud = np.abs(samples.astype(np.float64)) > 32768 * 10 ** (dbfs / 20)
    return float(len(loud) - np.argmax(loud[::-1])) / rate
