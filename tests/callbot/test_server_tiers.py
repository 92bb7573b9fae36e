"""The CallServer tier algorithm, sans-I/O (call-channel.md §5.6)."""

from callbot.server.tiers import AttentionLevel, Tier, TierChange, TierPolicy


def policy(*users: str) -> TierPolicy:
    tiers = TierPolicy()
    for user in users:
        tiers.add(user)
    return tiers


def test_new_participant_is_viewer_without_a_change() -> None:
    tiers = policy("a")
    assert tiers.states["a"].tier is Tier.VIEWER
    assert tiers.tick(5_000) == []


def test_speaking_true_makes_active_and_false_makes_recent() -> None:
    tiers = policy("a", "b")
    assert tiers.speaking("a", True, 1_000) == [TierChange("a", Tier.ACTIVE)]
    assert tiers.speaking("a", False, 3_000) == [TierChange("a", Tier.RECENT)]
    assert tiers.states["b"].tier is Tier.VIEWER


def test_recent_lasts_until_thirty_seconds_after_the_last_true() -> None:
    tiers = policy("a")
    tiers.speaking("a", True, 7_000)
    tiers.speaking("a", False, 8_000)
    assert tiers.tick(36_999) == []
    assert tiers.tick(37_000) == [TierChange("a", Tier.VIEWER)]
    assert tiers.active_speakers == []


def test_continuous_speaker_drops_straight_to_viewer() -> None:
    tiers = policy("a")
    tiers.speaking("a", True, 0)
    assert tiers.tick(35_000) == []  # still speaking: stays active
    assert tiers.active_speakers == ["a"]
    assert tiers.speaking("a", False, 40_000) == [TierChange("a", Tier.VIEWER)]


def test_fourth_speaker_evicts_the_oldest_to_recent() -> None:
    tiers = policy("a", "b", "c", "d")
    for at, user in enumerate("abc"):
        tiers.speaking(user, True, at * 1_000)
    changes = tiers.speaking("d", True, 4_000)
    assert changes == [TierChange("a", Tier.RECENT), TierChange("d", Tier.ACTIVE)]
    assert tiers.active_speakers == ["d", "c", "b"]


def test_evicted_speaker_after_the_window_becomes_viewer() -> None:
    tiers = policy("a", "b", "c", "d")
    tiers.speaking("a", True, 0)
    for user in "bcd":
        tiers.speaking(user, True, 31_000)
    assert tiers.states["a"].tier is Tier.VIEWER


def test_repeat_true_moves_a_speaker_to_the_front() -> None:
    tiers = policy("a", "b")
    tiers.speaking("a", True, 0)
    tiers.speaking("b", True, 1_000)
    tiers.speaking("a", True, 2_000)
    assert tiers.active_speakers == ["a", "b"]


def test_low_attention_is_idle_and_recovers() -> None:
    tiers = policy("a", "b")
    tiers.speaking("a", True, 0)
    assert tiers.attention("a", AttentionLevel.LOW, 1_000) == [
        TierChange("a", Tier.IDLE)
    ]
    assert tiers.speaking("a", True, 2_000) == []  # idle wins over speaking
    assert tiers.attention("a", AttentionLevel.MEDIUM, 3_000) == [
        TierChange("a", Tier.ACTIVE)
    ]


def test_attention_parse_maps_unknown_to_medium() -> None:
    assert AttentionLevel.parse("low") is AttentionLevel.LOW
    assert AttentionLevel.parse("sleepy") is AttentionLevel.MEDIUM
    assert AttentionLevel.parse(None) is AttentionLevel.MEDIUM


def test_prune_drops_left_and_stale_speakers() -> None:
    tiers = policy("a", "b")
    tiers.speaking("a", True, 0)
    tiers.speaking("b", True, 0)
    tiers.remove("b")
    assert tiers.active_speakers == ["b", "a"]  # pruned only on recompute
    tiers.speaking("a", False, 1_000)
    assert tiers.active_speakers == ["a"]
    tiers.tick(30_000)
    assert tiers.active_speakers == []


def test_disabled_makes_everyone_active_silently_and_enable_recomputes() -> None:
    tiers = policy("a", "b")
    assert tiers.set_enabled(False, 0) == []
    assert {s.tier for s in tiers.states.values()} == {Tier.ACTIVE}
    assert tiers.speaking("a", True, 1_000) == []
    assert tiers.tick(5_000) == []
    assert tiers.set_enabled(True, 6_000) == [TierChange("b", Tier.VIEWER)]
