"""The one answer to "how is this bot's video encoded now" for each tier and ceiling."""

from __future__ import annotations

import pytest

from callbot.bot.tiers import VideoPolicy, VideoSettings, describe, fit


@pytest.mark.parametrize(
    ("tier", "fps", "bitrate", "snapshots"),
    [
        ("active", 30, 2_500_000, False),
        ("recent", 15, 500_000, False),
        ("viewer", 5, 150_000, True),
        ("idle", 5, 100_000, False),
    ],
)
def test_browser_profile_table(
    tier: str, fps: int, bitrate: int, snapshots: bool
) -> None:
    policy = VideoPolicy(640, 480, 30)
    policy.tier_changed(tier)
    assert policy.current() == VideoSettings(
        tier=tier,
        fps=fps,
        max_bitrate=bitrate,
        width=640,
        height=480,
        snapshots=snapshots,
    )


def test_a_new_participant_is_a_viewer_with_snapshots() -> None:
    settings = VideoPolicy(640, 480, 30).current()
    assert (settings.tier, settings.fps, settings.snapshots) == ("viewer", 5, True)
    assert not settings.paused


def test_tier_changed_to_the_same_tier_changes_nothing_but_a_request_reapplies() -> (
    None
):
    policy = VideoPolicy(640, 480, 30)
    assert policy.tier_changed("viewer") is None
    requested = policy.tier_requested("viewer")
    assert requested is not None and requested.snapshots
    active = policy.tier_changed("active")
    assert active is not None and active.fps == 30


def test_unknown_tiers_are_ignored() -> None:
    policy = VideoPolicy(640, 480, 30)
    assert policy.tier_changed("vip") is None
    assert policy.tier_requested("vip") is None
    assert policy.tier == "viewer"


@pytest.mark.parametrize(
    ("quality", "size", "fps"),
    [
        ("high", (640, 480), 30),  # a smaller source is never scaled up
        ("medium", (640, 480), 24),
        ("low", (480, 360), 20),  # fits 640x360, aspect kept
        ("minimal", (320, 240), 15),
        ("bogus", (640, 480), 24),  # unknown: medium, as the browser does
    ],
)
def test_quality_changed_is_a_ceiling(
    quality: str, size: tuple[int, int], fps: int
) -> None:
    policy = VideoPolicy(640, 480, 30)
    policy.tier_changed("active")
    policy.quality_changed(quality)
    settings = policy.current()
    assert (settings.width, settings.height) == size
    assert settings.fps == fps
    assert settings.max_bitrate == 2_500_000


def test_ceiling_and_tier_take_the_lower_frame_rate() -> None:
    policy = VideoPolicy(1280, 720, 30)
    policy.quality_changed("minimal")
    assert policy.current().fps == 5  # viewer 5 < minimal 15
    assert (policy.current().width, policy.current().height) == (320, 180)


def test_server_profile_table() -> None:
    policy = VideoPolicy(1920, 1080, 30, profile="server")
    viewer = policy.current()
    assert viewer.paused and viewer.snapshots

    active = policy.tier_changed("active")
    assert active is not None
    assert (active.width, active.height, active.fps) == (1280, 720, 30)
    recent = policy.tier_changed("recent")
    assert recent is not None
    assert (recent.width, recent.height, recent.fps) == (640, 360, 15)
    assert recent.max_bitrate == 500_000 and not recent.paused
    idle = policy.tier_changed("idle")
    assert idle is not None and idle.static and not idle.snapshots


def test_server_profile_never_scales_a_small_source_up() -> None:
    policy = VideoPolicy(640, 480, 30, profile="server")
    active = policy.tier_changed("active")
    assert active is not None and (active.width, active.height) == (640, 480)


def test_adaptive_quality_off_makes_the_bot_active_and_on_restores_the_tier() -> None:
    policy = VideoPolicy(640, 480, 30)
    off = policy.adaptive_changed(False)
    assert off is not None and off.tier == "active" and off.fps == 30
    assert policy.tier_changed("idle") is None  # still active while off
    on = policy.adaptive_changed(True)
    assert on is not None and on.tier == "idle"


def test_source_rate_caps_the_tier_rate() -> None:
    policy = VideoPolicy(640, 480, 10)
    assert policy.tier_changed("active") == policy.current()
    assert policy.current().fps == 10


def test_fit_and_describe() -> None:
    assert fit(640, 480, 640, 360) == (480, 360)
    assert fit(320, 240, 1280, 720) == (320, 240)
    assert describe(VideoPolicy(640, 480, 30).current()) == (
        "viewer 640x480 5 fps 150 kbps +snapshots"
    )
