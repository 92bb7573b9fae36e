"""Mixing participants' audio at the composite's pace."""

from __future__ import annotations

import av
import numpy as np

from media.mixer import AudioMixer


def chunk(value: int, count: int) -> np.ndarray:  # type: ignore[type-arg]
    return np.full((count, 2), value, np.int16)


def test_sources_are_summed_and_clipped() -> None:
    mixer = AudioMixer(prebuffer=0)
    mixer.push("a", chunk(1000, 960))
    mixer.push("b", chunk(2000, 960))
    assert (mixer.pull(960) == 3000).all()
    mixer.push("a", chunk(30000, 960))
    mixer.push("b", chunk(30000, 960))
    assert (mixer.pull(960) == 32767).all()


def test_a_late_source_is_padded_with_silence() -> None:
    mixer = AudioMixer(prebuffer=0)
    mixer.push("a", chunk(500, 480))
    out = mixer.pull(960)
    assert (out[:480] == 500).all() and (out[480:] == 0).all()
    assert mixer.underrun == 480


def test_prebuffer_holds_a_new_source_back() -> None:
    mixer = AudioMixer(prebuffer=0.04)
    mixer.push("a", chunk(100, 960))  # 20 ms: not yet
    assert (mixer.pull(480) == 0).all()
    mixer.push("a", chunk(100, 960))  # 40 ms: mixed from now on
    assert (mixer.pull(480) == 100).all()


def test_a_source_running_ahead_is_trimmed_to_max_buffer() -> None:
    mixer = AudioMixer(prebuffer=0, max_buffer=0.1)
    for _ in range(20):  # 400 ms arrive at once
        mixer.push("a", chunk(7, 960))
    assert mixer.buffered("a") == 0.1
    assert mixer.dropped == 20 * 960 - 4800


def test_push_frame_resamples_mono_16k() -> None:
    mixer = AudioMixer(prebuffer=0)
    frame = av.AudioFrame.from_ndarray(
        np.full((1, 1600), 1000, np.int16), format="s16", layout="mono"
    )
    frame.sample_rate = 16000
    mixer.push_frame("a", frame)
    mixer.push_frame("a", frame)
    assert 4000 <= mixer.buffered("a") * 48000 <= 9600
    out = mixer.pull(2000)
    # Mono goes to both channels (at -3 dB, as libswresample upmixes).
    left, right = int(out[1500, 0]), int(out[1500, 1])
    assert left == right and 650 < left <= 1000
