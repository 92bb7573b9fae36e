"""Speaking detection on audio time: real speech speaks, tones and noise do not."""

from __future__ import annotations

import av
import numpy as np
import pytest
from numpy.typing import NDArray

from callbot.bot.audio import Resampler
from callbot.bot.speaking import (
    LoudnessSpeakingDetector,
    SpeakingChange,
    SpeakingDebouncer,
    SpeakingDetector,
    SpeakingSettings,
    ToneGuard,
    VoiceSpeakingDetector,
    make_detector,
)
from tests.callbot.speech_signals import (
    SPEECH_FILES,
    beeps,
    pink_noise,
    read_wav,
    speech_end,
    speech_start,
    tone,
)


def feed(
    detector: SpeakingDetector, samples: NDArray[np.int16], rate: int, chunk: int
) -> list[SpeakingChange]:
    changes: list[SpeakingChange] = []
    for i in range(0, len(samples), chunk):
        changes += detector.push(samples[i : i + chunk], rate)
    return changes


def episodes(changes: list[SpeakingChange]) -> int:
    return sum(1 for c in changes if c.speaking)


def padded_speech(name: str) -> tuple[NDArray[np.int16], int, float, float]:
    """Speech after 1 s of quiet pink noise, then 2 s of it: signal and truth."""
    speech, rate = read_wav(name)
    lead = pink_noise(-60, 1.0, rate, seed=1)
    tail = pink_noise(-60, 2.0, rate, seed=2)
    signal = np.concatenate([lead, speech, tail])
    start = 1.0 + speech_start(speech, rate)
    end = 1.0 + speech_end(speech, rate)
    return signal, rate, start, end


# ------------------------------------------------------------ real speech


@pytest.mark.parametrize("name", SPEECH_FILES)
def test_speech_onset_within_150_ms_and_release_after_500_ms(name: str) -> None:
    signal, rate, start, end = padded_speech(name)

    changes = feed(VoiceSpeakingDetector(), signal, rate, 320)

    assert [c.speaking for c in changes] == [True, False]
    onset = changes[0].time - start
    assert 0.0 < onset <= 0.150
    release = changes[1].time - end
    assert 0.45 <= release <= 0.75


@pytest.mark.parametrize("name", SPEECH_FILES)
def test_48_khz_stereo_frames_of_odd_sizes_give_the_same_onset(name: str) -> None:
    signal, rate, start, _ = padded_speech(name)
    mono48 = Resampler(rate, 48000).process(signal)
    stereo = np.repeat(mono48, 2)  # interleaved L R

    detector = VoiceSpeakingDetector()
    changes: list[SpeakingChange] = []
    position, sizes = 0, [331, 960, 17, 1441, 5]
    for i in range(100_000):
        n = sizes[i % len(sizes)]
        chunk = stereo[2 * position : 2 * (position + n)]
        if len(chunk) == 0:
            break
        frame = av.AudioFrame.from_ndarray(
            chunk.reshape(1, -1), format="s16", layout="stereo"
        )
        frame.sample_rate = 48000
        changes += detector.push_frame(frame)
        position += n

    assert changes and changes[0].speaking
    assert 0.0 < changes[0].time - start <= 0.150
    assert detector.framer.time == pytest.approx(len(mono48) / 48000, abs=0.011)


def test_speech_at_each_webrtcvad_rate_and_frame_length() -> None:
    signal, rate, start, _ = padded_speech(SPEECH_FILES[0])
    for vad_rate in (8000, 16000, 32000, 48000):
        for frame_ms in (10, 20, 30):
            settings = SpeakingSettings(rate=vad_rate, frame_ms=frame_ms)
            changes = feed(VoiceSpeakingDetector(settings), signal, rate, 480)
            assert changes[0].speaking, (vad_rate, frame_ms)
            # Debounce plus at most one frame of granularity.
            assert changes[0].time - start <= 0.150 + frame_ms / 1000


# ------------------------------------------------------------ not speech


@pytest.mark.parametrize("freq", [440.0, 1000.0])
@pytest.mark.parametrize("dbfs", [-10.0, -20.0])
def test_steady_tones_never_speak(freq: float, dbfs: float) -> None:
    detector = VoiceSpeakingDetector()

    changes = feed(detector, tone(freq, dbfs, 20.0, 48000), 48000, 960)

    assert changes == []
    # webrtcvad alone calls the tone voiced; the guard is what stops it.
    assert detector.tonal_frames > 0.9 * detector.frames


@pytest.mark.parametrize("freq", [440.0, 1000.0])
@pytest.mark.parametrize("dbfs", [-10.0, -20.0])
def test_100_ms_beeps_once_a_second_never_speak(freq: float, dbfs: float) -> None:
    changes = feed(VoiceSpeakingDetector(), beeps(freq, dbfs, 20.0, 48000), 48000, 960)
    assert changes == []


def test_the_default_tone_source_leaves_the_bot_silent() -> None:
    from media.sources.tone import ToneTrack

    track = ToneTrack()  # 440 Hz, with a 1 kHz beep in the first 100 ms of a second
    detector = VoiceSpeakingDetector()
    changes = [
        c
        for i in range(1000)
        for c in detector.push_frame(track.frame(i, wall_clock=1000.0 + i * 0.02))
    ]
    assert changes == []


def test_pink_noise_at_minus_30_dbfs_at_most_one_false_episode_per_minute() -> None:
    minutes = 5
    noise = pink_noise(-30, 60.0 * minutes, 16000)
    detector = VoiceSpeakingDetector(SpeakingSettings(aggressiveness=3))

    changes = feed(detector, noise, 16000, 320)

    assert episodes(changes) <= minutes


def test_silence_never_speaks() -> None:
    silence = np.zeros(16000 * 10, dtype=np.int16)
    assert feed(VoiceSpeakingDetector(), silence, 16000, 160) == []


def test_tone_guard_measures_lines_against_speech() -> None:
    guard = ToneGuard(16000)
    speech, _ = read_wav(SPEECH_FILES[1])
    window = guard.window
    shares = [
        guard.line_share(speech[i - window : i])
        for i in range(window, len(speech), 160)
        if np.abs(speech[i - window : i]).max() > 1000
    ]
    assert guard.line_share(tone(440, -20, 0.1, 16000)) > 0.999
    # Almost no loud speech window looks like a few pure lines.
    assert np.mean(np.asarray(shares) >= guard.threshold) < 0.02


# ------------------------------------------------------------ debouncer


def run_debouncer(
    debouncer: SpeakingDebouncer, pattern: list[bool], step: float = 0.01
) -> list[tuple[bool, float]]:
    out = []
    for i, voiced in enumerate(pattern):
        state = debouncer.update(voiced, i * step, (i + 1) * step)
        if state is not None:
            out.append((state, round((i + 1) * step, 3)))
    return out


def test_debouncer_confirms_after_100_ms_and_releases_500_ms_after_voice() -> None:
    pattern = [True] * 30 + [False] * 80
    assert run_debouncer(SpeakingDebouncer(), pattern) == [(True, 0.1), (False, 0.8)]


def test_debouncer_reports_transitions_only() -> None:
    pattern = [True] * 300
    assert run_debouncer(SpeakingDebouncer(), pattern) == [(True, 0.1)]


def test_debouncer_bridges_short_gaps_but_restarts_after_long_ones() -> None:
    short_gap = [True] * 5 + [False] * 2 + [True] * 10
    assert run_debouncer(SpeakingDebouncer(), short_gap)[0] == (True, 0.1)
    long_gap = [True] * 5 + [False] * 5 + [True] * 10
    assert run_debouncer(SpeakingDebouncer(), long_gap)[0] == (True, 0.2)


def test_debouncer_voice_during_release_keeps_speaking() -> None:
    pattern = [True] * 20 + ([False] * 40 + [True]) * 5 + [False] * 60
    assert run_debouncer(SpeakingDebouncer(), pattern) == [(True, 0.1), (False, 2.75)]


def test_onset_and_release_times_are_settings() -> None:
    settings = SpeakingSettings(onset_ms=200, release_ms=1000)
    detector = VoiceSpeakingDetector(settings)
    assert detector.debouncer.onset == 0.2
    assert detector.debouncer.release == 1.0
    pattern = [True] * 30 + [False] * 120
    assert run_debouncer(detector.debouncer, pattern) == [(True, 0.2), (False, 1.3)]


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        VoiceSpeakingDetector(SpeakingSettings(aggressiveness=4))
    with pytest.raises(ValueError):
        VoiceSpeakingDetector(SpeakingSettings(rate=44100))
    with pytest.raises(ValueError):
        VoiceSpeakingDetector(SpeakingSettings(frame_ms=15))


# ------------------------------------------------------------ browser detector


def test_loudness_detector_one_loud_moment_true_after_100_false_600_later() -> None:
    rate = 48000
    signal = np.zeros(rate * 3, dtype=np.int16)
    # 20 ms at -20 dBFS from t = 1.0 s: seen by one or two evaluations.
    signal[rate : rate + 960] = tone(1000, -20, 0.02, rate)

    changes = feed(LoudnessSpeakingDetector(), signal, rate, 960)

    assert [c.speaking for c in changes] == [True, False]
    assert 0.100 <= changes[0].time - 1.0 <= 0.100 + 1 / 60 + 1e-9
    assert 0.55 <= changes[1].time - 1.02 <= 0.65


def test_loudness_detector_levels_between_thresholds_change_nothing() -> None:
    rate = 48000
    # RMS 0.007: above the stop level, below the start level.
    quiet = tone(300, 20 * np.log10(0.007), 5.0, rate)
    assert feed(LoudnessSpeakingDetector(), quiet, rate, 960) == []


def test_detectors_compared_on_one_tone_only_loudness_speaks() -> None:
    signal = tone(440, -20, 3.0, 48000)
    vad = feed(make_detector(SpeakingSettings(detector="vad")), signal, 48000, 960)
    loud = feed(
        make_detector(SpeakingSettings(detector="loudness")), signal, 48000, 960
    )
    assert vad == []
    assert [c.speaking for c in loud] == [True]


@pytest.mark.parametrize("name", SPEECH_FILES)
def test_loudness_detector_on_speech(name: str) -> None:
    signal, rate, start, _ = padded_speech(name)
    changes = feed(LoudnessSpeakingDetector(), signal, rate, 333)
    assert changes[0].speaking
    assert 0.1 <= changes[0].time - start <= 0.150
