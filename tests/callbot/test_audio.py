"""Audio into webrtcvad frames: any layout and rate in, mono int16 frames out."""

from __future__ import annotations

import av
import numpy as np
import pytest

from callbot.bot.audio import PcmFramer, Resampler, frame_to_mono, to_mono_int16
from tests.callbot.speech_signals import tone


def stereo_frame(
    left: np.ndarray, right: np.ndarray, rate: int = 48000
) -> av.AudioFrame:
    interleaved = np.stack([left, right], axis=1).reshape(1, -1).astype(np.int16)
    frame = av.AudioFrame.from_ndarray(interleaved, format="s16", layout="stereo")
    frame.sample_rate = rate
    return frame


def test_aiortc_opus_output_48k_stereo_20ms_gives_two_10ms_frames_at_16k() -> None:
    framer = PcmFramer(16000, 10)
    wave = tone(1000, -20, 0.02, 48000)

    frames = framer.push_frame(stereo_frame(wave, wave))

    # The resampler holds back half its kernel (about 0.7 ms) for the next buffer.
    assert [len(f) for f in frames] == [160]
    frames += framer.push_frame(stereo_frame(wave, wave))
    assert [len(f) for f in frames] == [160] * 3
    assert all(f.dtype == np.int16 for f in frames)


def test_stereo_is_averaged_to_mono() -> None:
    left = np.full(960, 1000, dtype=np.int16)
    right = np.full(960, -200, dtype=np.int16)
    assert set(frame_to_mono(stereo_frame(left, right)).tolist()) == {400}


def test_planar_float_frames_are_scaled_to_16_bit() -> None:
    samples = np.full((2, 480), 0.5, dtype=np.float32)
    frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="stereo")
    frame.sample_rate = 48000
    assert set(frame_to_mono(frame).tolist()) == {16384}
    assert to_mono_int16(np.array([-1.0, 1.0]), 1).tolist() == [-32768, 32767]


@pytest.mark.parametrize("rate", [8000, 16000, 32000, 48000])
@pytest.mark.parametrize("frame_ms", [10, 20, 30])
def test_odd_buffers_carry_over_and_never_pass_short_frames(
    rate: int, frame_ms: int
) -> None:
    framer = PcmFramer(rate, frame_ms)
    signal = tone(300, -20, 2.0, 48000)
    frames = []
    sizes = [1, 7, 331, 960, 1441, 2]
    i = position = 0
    while position < len(signal):
        n = sizes[i % len(sizes)]
        frames += framer.push(signal[position : position + n], 48000)
        position += n
        i += 1

    expected = rate * frame_ms // 1000
    assert all(len(f) == expected for f in frames)
    # All of the 2 s except what waits for the next buffer (< one frame + kernel).
    assert 2.0 - framer.time < frame_ms / 1000 + 0.002
    assert framer.time == pytest.approx(len(frames) * frame_ms / 1000)


def test_resampling_keeps_frequency_and_phase_across_buffer_boundaries() -> None:
    signal = tone(1000, -10, 1.0, 48000)
    resampler = Resampler(48000, 16000)
    rng = np.random.default_rng(3)
    out, position = [], 0
    while position < len(signal):
        n = int(rng.integers(1, 2000))
        out.append(resampler.process(signal[position : position + n]))
        position += n
    result = np.concatenate(out).astype(np.float64)

    expected = tone(1000, -10, 1.0, 16000)[: len(result)].astype(np.float64)
    error = np.abs(result[64:-64] - expected[64:-64]).max()
    assert error < 0.001 * np.abs(expected).max()


def test_content_above_the_new_nyquist_is_filtered_out() -> None:
    high = tone(10000, -10, 0.5, 48000)
    result = Resampler(48000, 16000).process(high)[100:].astype(np.float64)
    rms = np.sqrt(np.mean(result**2))
    assert 20 * np.log10(rms / 32768) < -50


def test_invalid_vad_rate_or_frame_length_is_refused() -> None:
    with pytest.raises(ValueError):
        PcmFramer(44100, 10)
    with pytest.raises(ValueError):
        PcmFramer(16000, 25)
