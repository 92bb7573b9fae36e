"""An audio file as the bot's microphone: WAV or Ogg, 48 kHz mono 20 ms, looped."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from media.sources.file import AudioFileError, FileAudioTrack, read_audio
from tests.callbot.speech_signals import DATA, read_wav

SPEECH = DATA / "speech-en-us-16k.wav"


def test_wav_is_read_at_48_khz_mono() -> None:
    samples = read_audio(SPEECH)
    original, rate = read_wav(SPEECH.name)
    assert samples.dtype == np.int16
    assert len(samples) == pytest.approx(len(original) * 48000 / rate, abs=48)
    assert np.abs(samples).max() > 1000


def test_frames_are_20_ms_with_running_pts() -> None:
    track = FileAudioTrack(SPEECH)
    frame = track.frame(3)
    assert (frame.samples, frame.sample_rate, frame.layout.name) == (960, 48000, "mono")
    assert frame.pts == 3 * 960 and frame.time_base == Fraction(1, 48000)


def test_looped_wraps_and_unlooped_goes_silent() -> None:
    looped = FileAudioTrack(SPEECH)
    once = FileAudioTrack(SPEECH, loop=False)
    total = len(looped.samples)
    past_end = total // 960 + 5
    wrapped = looped.frame(past_end).to_ndarray().reshape(-1)
    start = (past_end * 960) % total
    assert np.array_equal(wrapped, looped.samples[start : start + 960])
    assert not once.frame(past_end).to_ndarray().any()


def test_ogg_opus_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "clip.ogg"
    original = read_audio(SPEECH)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libopus", rate=48000)
        stream.layout = "mono"
        for i in range(0, len(original) - 960, 960):
            frame = av.AudioFrame.from_ndarray(
                original[i : i + 960].reshape(1, -1), format="s16", layout="mono"
            )
            frame.sample_rate = 48000
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)

    samples = read_audio(path)
    assert abs(len(samples) - len(original)) < 48000 * 0.1
    assert np.abs(samples).max() > 1000


def test_unreadable_files_raise(tmp_path: Path) -> None:
    with pytest.raises(AudioFileError):
        read_audio(tmp_path / "missing.wav")
    text = tmp_path / "notes.wav"
    text.write_text("not audio")
    with pytest.raises(AudioFileError):
        read_audio(text)
