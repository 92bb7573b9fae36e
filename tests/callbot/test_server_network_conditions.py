"""Network conditions per track: which packets the relay drops, holds or pauses."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from callbot.server.network_conditions import (
    NetworkConditions,
    PauseGate,
    TrackImpairment,
)


def run(
    impairment: TrackImpairment, packets: int, start: float = 0.0
) -> list[float | None]:
    return [impairment.decide(start + i * 0.001, False) for i in range(packets)]


def test_clean_conditions_pass_every_packet_at_once() -> None:
    impairment = TrackImpairment(NetworkConditions(), 0.0)
    assert run(impairment, 100) == [0.0] * 100


def test_five_percent_loss_drops_about_one_in_twenty_first_transmissions() -> None:
    impairment = TrackImpairment(NetworkConditions(loss=0.05), 0.0, random.Random(7))
    decisions = run(impairment, 20_000)
    share = decisions.count(None) / len(decisions)
    assert share == pytest.approx(0.05, abs=0.005)
    assert impairment.counters.dropped == decisions.count(None)


def test_retransmissions_are_never_lost_but_are_delayed() -> None:
    conditions = NetworkConditions(loss=1.0, delay_ms=80)
    impairment = TrackImpairment(conditions, 0.0, random.Random(1))
    assert impairment.decide(0.0, False) is None
    assert impairment.decide(0.0, True) == pytest.approx(0.08)
    assert impairment.counters.retransmissions == 1


def test_a_pause_holds_frames_for_its_length_then_video_resumes_at_a_keyframe() -> None:
    impairment = TrackImpairment(NetworkConditions(), 0.0)
    gate = PauseGate(impairment, "video")
    assert gate.admit(9.9, False) == (True, False)
    impairment.set(NetworkConditions(pause_ms=2000), 10.0)
    assert gate.admit(10.0, True) == (False, False)
    assert gate.admit(11.999, False) == (False, False)
    # Over: the first frame asks for a keyframe, delta frames wait for it.
    assert gate.admit(12.0, False) == (False, True)
    assert gate.admit(12.5, False) == (False, False)
    assert gate.admit(13.0, False) == (False, True)
    assert gate.admit(13.1, True) == (True, False)
    assert gate.admit(13.2, False) == (True, False)
    assert impairment.counters.paused_frames == 5
    # The pause never touches packets.
    assert impairment.decide(11.0, False) == 0.0


def test_paused_audio_resumes_with_the_next_frame() -> None:
    impairment = TrackImpairment(NetworkConditions(pause_ms=500), 0.0)
    gate = PauseGate(impairment, "audio")
    assert gate.admit(0.2, True) == (False, False)
    assert gate.admit(0.5, True) == (True, False)


def test_settings_out_of_range_are_refused() -> None:
    with pytest.raises(ValidationError):
        NetworkConditions(loss=1.5)
    with pytest.raises(ValidationError):
        NetworkConditions.model_validate({"loss": 0.1, "jitter": 3})
