"""Loss on the wire and after repair, from sequence numbers (sans-I/O)."""

from __future__ import annotations

import pytest

from callbot.rtc.rtpwatch import RtpWatch, SequenceTracker


def test_gaps_are_wire_loss_and_rtx_repairs_them() -> None:
    tracker = SequenceTracker()
    for seq in range(100):
        if seq % 20 != 7:  # 5 of 100 lost on the wire
            tracker.media(seq)
    for seq in (7, 27, 47):
        tracker.retransmission(seq)
    counts = tracker.counts()
    assert counts.expected == 100
    assert counts.wire_lost == 5 and counts.wire_loss == pytest.approx(0.05)
    assert counts.repaired == 3 and counts.loss == pytest.approx(0.02)


def test_sequence_numbers_wrap_at_16_bits() -> None:
    tracker = SequenceTracker()
    for seq in [*range(65530, 65536), *range(0, 10)]:
        if seq != 2:
            tracker.media(seq)
    counts = tracker.counts()
    assert counts.expected == 16 and counts.wire_lost == 1


def test_a_late_media_packet_is_a_repair_not_a_new_loss() -> None:
    tracker = SequenceTracker()
    for seq in (1, 2, 4, 5, 3):
        tracker.media(seq)
    counts = tracker.counts()
    assert (counts.wire_lost, counts.repaired, counts.lost) == (1, 1, 0)


def test_jitter_of_evenly_spaced_frames_is_zero_and_grows_with_spread() -> None:
    even = RtpWatch(SequenceTracker())
    uneven = RtpWatch(SequenceTracker())
    for i in range(100):
        even.media(i, i * 3000, 1000, 10.0 + i / 30, 90000)
        wobble = 0.010 if i % 2 else 0.0
        uneven.media(i, i * 3000, 1000, 10.0 + i / 30 + wobble, 90000)
    assert even.jitter == pytest.approx(0.0, abs=1e-9)
    assert uneven.jitter == pytest.approx(0.010, abs=0.001)
