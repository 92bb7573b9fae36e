from __future__ import annotations

from callbot.bot.backoff import Backoff


def test_a_loop_of_failures_waits_longer_each_time() -> None:
    backoff = Backoff()
    now, delays = 0.0, []
    for _ in range(8):
        delay = backoff.next_delay(now)
        delays.append(delay)
        now += delay + 0.01
    assert delays == [0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 10.0, 10.0]


def test_a_failure_after_a_stable_stretch_starts_again_quickly() -> None:
    backoff = Backoff(stable_after=30.0)
    for now in (0.0, 0.3, 1.0):
        backoff.next_delay(now)
    assert backoff.next_delay(31.0) == 0.2
    assert backoff.next_delay(31.3) == 0.5
