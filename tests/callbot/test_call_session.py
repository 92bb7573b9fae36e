from __future__ import annotations

from callbot.call.session import DuplicateFilter

ME = {"user_id": "bot-1", "endpoint_id": "bot-1_7", "user_info": {"name": "b"}}
CRASHED = {"user_id": "bot-1", "crashed": True}
TIER = {"user_id": "u-2", "tier": "active"}


def feed(f: DuplicateFilter, pushes: list[tuple[str, dict[str, object]]]) -> list[str]:
    kept = []
    for i, (event, payload) in enumerate(pushes):
        probe = event == "participant_joined" and payload["user_id"] == "bot-1"
        if f.accept(event, payload, i * 0.01, probe=probe):
            kept.append(event)
    return kept


def test_single_delivery_server_never_loses_a_genuine_repeat() -> None:
    # A server that pushes once: the second identical participant_left
    # (a second crash after the rejoin) is a real event, not a copy.
    f = DuplicateFilter()
    kept = feed(
        f,
        [
            ("participant_joined", ME),
            ("tier_changed", TIER),
            ("participant_left", CRASHED),
            ("participant_left", CRASHED),
            ("tier_changed", TIER),
        ],
    )
    assert f.copies == 1
    assert kept == [
        "participant_joined",
        "tier_changed",
        "participant_left",
        "participant_left",
        "tier_changed",
    ]


def test_doubling_server_copies_are_absorbed_and_repeats_kept() -> None:
    f = DuplicateFilter()
    kept = feed(
        f,
        [
            ("participant_joined", ME),
            ("participant_joined", ME),
            ("participant_left", CRASHED),
            ("tier_changed", TIER),  # interleaved between the two copies
            ("participant_left", CRASHED),
            ("participant_left", CRASHED),  # a genuine second crash
            ("participant_left", CRASHED),
        ],
    )
    assert f.copies == 2
    assert kept == [
        "participant_joined",
        "participant_left",
        "tier_changed",
        "participant_left",
    ]


def test_a_copy_that_never_comes_is_forgotten_after_the_window() -> None:
    f = DuplicateFilter(window=2.0)
    assert f.accept("tier_changed", TIER, 0.0)
    assert f.accept("tier_changed", TIER, 5.0)
