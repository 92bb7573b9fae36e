"""Network conditions per track: which packets the relay drops, holds or pauses."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from callbot.server.network_conditions import NetworkConditions, TrackImpairment


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


def test_a_pause_drops_everything_for_its_length_from_when_it_is_set() -> None:
    impairment = TrackImpairment(NetworkConditions(), 0.0)
    impairment.set(NetworkConditions(pause_ms=2000), 10.0)
    assert impairment.decide(10.0, False) is None
    assert impairment.decide(11.999, True) is None
    assert impairment.decide(12.0, False) == 0.0
    assert impairment.counters.paused == 2


def test_settings_out_of_range_are_refused() -> None:
    with pytest.raises(ValidationError):
        NetworkConditions(loss=1.5)
    with pytest.raises(ValidationError):
        NetworkConditions.model_validate({"loss": 0.1, "jitter": 3})
