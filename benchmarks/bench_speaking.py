"""Speaking detection cost: CPU seconds per second of audio, and onset latency.

Run: .venv/bin/python benchmarks/bench_speaking.py
"""

from __future__ import annotations

import sys
import time
import wave
from pathlib import Path

import av
import numpy as np
import webrtcvad

from callbot.bot.audio import Resampler
from callbot.bot.speaking import (
    LoudnessSpeakingDetector,
    SpeakingSettings,
    VoiceSpeakingDetector,
)

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
CLIPS = ("speech-en-us-16k.wav", "speech-en-gb-f-16k.wav")


def read(name: str) -> np.ndarray:
    with wave.open(str(DATA / name)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)


def opus_like_frames(mono48: np.ndarray) -> list[av.AudioFrame]:
    """48 kHz stereo s16 20 ms frames, as aiortc's Opus decoder gives them."""
    frames = []
    for i in range(0, len(mono48) - 960 + 1, 960):
        stereo = np.repeat(mono48[i : i + 960], 2).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(stereo, format="s16", layout="stereo")
        frame.sample_rate = 48000
        frames.append(frame)
    return frames


def cpu_per_audio_second(label: str, frames: list[av.AudioFrame], make) -> None:  # type: ignore[no-untyped-def]
    detector = make()
    start = time.process_time()
    for frame in frames:
        detector.push_frame(frame)
    cpu = time.process_time() - start
    seconds = len(frames) * 0.02
    print(
        f"{label:<52} {cpu / seconds * 1000:7.2f} ms CPU per s of audio"
        f" ({cpu / seconds * 100:.2f} % of a core)"
    )


def webrtcvad_alone(mono16: np.ndarray) -> None:
    vad = webrtcvad.Vad(3)
    frames = [mono16[i : i + 160].tobytes() for i in range(0, len(mono16) - 160, 160)]
    start = time.process_time()
    for frame in frames:
        vad.is_speech(frame, 16000)
    cpu = time.process_time() - start
    seconds = len(frames) * 0.01
    print(
        f"{'webrtcvad alone (16 kHz mono 10 ms frames)':<52}"
        f" {cpu / seconds * 1000:7.2f} ms CPU per s of audio"
    )


def onset_latency() -> None:
    for name in CLIPS:
        speech = read(name)
        silence = np.zeros(16000, dtype=np.int16)
        signal = np.concatenate([silence, speech, silence, silence])
        loud = np.abs(signal.astype(np.float64)) > 32768 * 10 ** (-40 / 20)
        start = np.argmax(loud) / 16000
        for label, detector in (
            ("vad", VoiceSpeakingDetector(SpeakingSettings())),
            ("loudness", LoudnessSpeakingDetector()),
        ):
            changes = []
            for i in range(0, len(signal), 320):
                changes += detector.push(signal[i : i + 320], 16000)
            onset = (changes[0].time - start) * 1000 if changes else float("nan")
            print(f"onset {label:<9} {name:<26} {onset:6.1f} ms after speech starts")


def main() -> None:
    minutes = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    speech16 = np.concatenate([read(name) for name in CLIPS])
    reps = max(1, int(minutes * 60 / (len(speech16) / 16000)))
    speech16 = np.tile(speech16, reps)
    speech48 = Resampler(16000, 48000).process(speech16)
    frames = opus_like_frames(speech48)
    print(f"audio: {len(frames) * 0.02:.0f} s of espeak speech, 48 kHz stereo 20 ms")
    webrtcvad_alone(speech16)
    cpu_per_audio_second(
        "vad detector: 48k stereo -> 16k, tone guard, debounce",
        frames,
        lambda: VoiceSpeakingDetector(),
    )
    cpu_per_audio_second(
        "vad detector without tone guard",
        frames,
        lambda: VoiceSpeakingDetector(SpeakingSettings(tone_guard=False)),
    )
    cpu_per_audio_second(
        "vad detector at 48 kHz (no resampling)",
        frames,
        lambda: VoiceSpeakingDetector(SpeakingSettings(rate=48000, frame_ms=10)),
    )
    cpu_per_audio_second(
        "browser loudness detector", frames, lambda: LoudnessSpeakingDetector()
    )
    onset_latency()


if __name__ == "__main__":
    main()
