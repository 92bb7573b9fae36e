"""Beeps of the tone source, found again after Opus, aligned with the flashes."""

from __future__ import annotations

import av
import pytest

from callbot.bot.audio import frame_to_mono
from media.markers.beeps import BeepDetector, nominal_beep_time
from media.markers.framecode import is_flash
from media.sources.tone import FRAME_SAMPLES, SAMPLE_RATE, ToneTrack

START = 1_764_860_399.37


def tone_frames(
    seconds: float, start: float = START
) -> list[tuple[float, av.AudioFrame]]:
    track = ToneTrack()
    count = int(seconds * SAMPLE_RATE / FRAME_SAMPLES)
    out = []
    for i in range(count):
        wall = start + i * FRAME_SAMPLES / SAMPLE_RATE
        out.append((wall, track.frame(i, wall)))
    return out


def test_beeps_start_on_each_wall_second() -> None:
    detector = BeepDetector()
    onsets: list[float] = []
    for wall, frame in tone_frames(4.0):
        onsets += detector.push(frame_to_mono(frame), SAMPLE_RATE, wall)
    assert len(onsets) == 4
    assert [nominal_beep_time(o) for o in onsets] == [
        float(int(START) + k) for k in (1, 2, 3, 4)
    ]
    for onset in onsets:
        assert onset - nominal_beep_time(onset) == pytest.approx(0.0, abs=0.011)


def test_beeps_sound_while_the_flash_is_on() -> None:
    frames = tone_frames(2.0)
    for wall, frame in frames:
        mono = frame_to_mono(frame)
        loud_beep = BeepDetector().push(mono, SAMPLE_RATE, wall)
        if is_flash(wall) and is_flash(wall + 0.019):
            assert loud_beep == [wall]
        elif not is_flash(wall) and not is_flash(wall + 0.019):
            assert loud_beep == []


def test_a_source_without_beeps_gives_no_onsets() -> None:
    track = ToneTrack(beeps=False)
    detector = BeepDetector()
    onsets = [
        onset
        for i in range(150)
        for onset in detector.push(
            frame_to_mono(track.frame(i, START + i * 0.02)), SAMPLE_RATE, START
        )
    ]
    assert onsets == []


def test_beeps_survive_opus_at_the_received_timing() -> None:
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate = SAMPLE_RATE
    encoder.layout = "mono"
    encoder.format = "s16"
    encoder.bit_rate = 32000
    decoder = av.CodecContext.create("opus", "r")
    detector = BeepDetector()
    delay = 0.085  # what the network and jitter buffer add
    onsets: list[float] = []
    for wall, frame in tone_frames(5.0):
        for packet in encoder.encode(frame):
            for decoded in decoder.decode(packet):
                onsets += detector.push(
                    frame_to_mono(decoded), decoded.sample_rate, wall + delay
                )
    assert len(onsets) == 5
    latencies = [onset - nominal_beep_time(onset) for onset in onsets]
    # Opus adds its own lookahead (6.5 ms) and one frame of encoder delay.
    for latency in latencies:
        assert latency == pytest.approx(delay, abs=0.035)
