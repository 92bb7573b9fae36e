"""How this bot's video is encoded now: tier, profile and quality ceiling (sans-I/O).

The server tells each participant its tier (``tier_changed``; active, recent,
viewer, idle) and the call's participant-count quality (``quality_changed``).
:class:`VideoPolicy` holds both and answers with one :class:`VideoSettings`:
frame rate, bitrate cap, resolution, whether the track is paused or shows a
static picture, and whether snapshots are sent. Two profiles:

- ``browser`` (default): what Sensocto's browsers do (call-channel.md §6.3).
  The resolution stays the source's; only fps and bitrate follow the tier;
  snapshots in viewer on top of the video.
- ``server``: the server's advisory tier table (§5.5): active 1280x720 at
  30 fps, recent 640x480 at 15, viewer snapshots only with the video paused,
  idle a static picture.

``quality_changed`` is a ceiling on the source (§6.4): a source smaller than
the ceiling is never scaled up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

logger = logging.getLogger(__name__)

Profile = Literal["browser", "server"]
TIERS = ("active", "recent", "viewer", "idle")
INITIAL_TIER = "viewer"


@dataclass(frozen=True)
class VideoSettings:
    """What the video sender does now."""

    tier: str
    fps: int
    max_bitrate: int
    width: int
    height: int
    snapshots: bool = False
    paused: bool = False  # no frames at all (server profile, viewer)
    static: bool = False  # a still picture instead of the source (server, idle)


@dataclass(frozen=True)
class TierVideo:
    """One row of a tier table; ``width``/``height`` None keep the source's."""

    fps: int
    max_bitrate: int
    width: int | None = None
    height: int | None = None
    snapshots: bool = False
    paused: bool = False
    static: bool = False


@dataclass(frozen=True)
class Ceiling:
    """Largest size and frame rate ``quality_changed`` allows."""

    width: int
    height: int
    fps: int


BROWSER_TIERS: Mapping[str, TierVideo] = {
    "active": TierVideo(fps=30, max_bitrate=2_500_000),
    "recent": TierVideo(fps=15, max_bitrate=500_000),
    "viewer": TierVideo(fps=5, max_bitrate=150_000, snapshots=True),
    "idle": TierVideo(fps=5, max_bitrate=100_000),
}

SERVER_TIERS: Mapping[str, TierVideo] = {
    "active": TierVideo(fps=30, max_bitrate=2_500_000, width=1280, height=720),
    "recent": TierVideo(fps=15, max_bitrate=500_000, width=640, height=480),
    "viewer": TierVideo(
        fps=0, max_bitrate=100_000, width=320, height=240, snapshots=True, paused=True
    ),
    # Known limit: the "avatar" is a still grey picture at 1 fps, not a drawing.
    "idle": TierVideo(fps=1, max_bitrate=100_000, width=320, height=240, static=True),
}

PROFILES: Mapping[str, Mapping[str, TierVideo]] = {
    "browser": BROWSER_TIERS,
    "server": SERVER_TIERS,
}

QUALITY_CEILINGS: Mapping[str, Ceiling] = {
    "high": Ceiling(1280, 720, 30),
    "medium": Ceiling(640, 480, 24),
    "low": Ceiling(640, 360, 20),
    "minimal": Ceiling(320, 240, 15),
}


def fit(width: int, height: int, max_width: int, max_height: int) -> tuple[int, int]:
    """``width``x``height`` scaled down (never up) to fit, aspect kept, even sides."""
    scale = min(1.0, max_width / width, max_height / height)
    if scale >= 1.0:
        return width, height
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


class VideoPolicy:
    """The bot's tier, profile and quality ceiling, and what they mean for video."""

    def __init__(
        self,
        width: int,
        height: int,
        fps: int,
        profile: Profile = "browser",
    ) -> None:
        if profile not in PROFILES:
            raise ValueError(f"profile must be one of {sorted(PROFILES)}")
        self.source_width = width
        self.source_height = height
        self.source_fps = fps
        self.profile: Profile = profile
        self.tier = INITIAL_TIER
        self.quality: str | None = None
        self.adaptive = True

    @property
    def ceiling(self) -> Ceiling | None:
        if self.quality is None:
            return None
        return QUALITY_CEILINGS.get(self.quality, QUALITY_CEILINGS["medium"])

    @property
    def effective_tier(self) -> str:
        """The tier applied: every participant is active with adaptive quality off."""
        return self.tier if self.adaptive else "active"

    def current(self) -> VideoSettings:
        """What the video sender should do now."""
        tier = self.effective_tier
        row = PROFILES[self.profile][tier]
        width, height = self.source_width, self.source_height
        if row.width is not None and row.height is not None:
            width, height = fit(width, height, row.width, row.height)
        fps = min(row.fps, self.source_fps)
        ceiling = self.ceiling
        if ceiling is not None:
            width, height = fit(width, height, ceiling.width, ceiling.height)
            fps = min(fps, ceiling.fps)
        return VideoSettings(
            tier=tier,
            fps=fps,
            max_bitrate=row.max_bitrate,
            width=width,
            height=height,
            snapshots=row.snapshots,
            paused=row.paused,
            static=row.static,
        )

    def tier_changed(self, tier: str) -> VideoSettings | None:
        """The server's ``tier_changed`` for this bot; None if nothing changes."""
        if tier not in TIERS:
            logger.warning("unknown tier %r ignored", tier)
            return None
        if tier == self.tier:
            return None
        return self._apply(lambda: setattr(self, "tier", tier))

    def tier_requested(self, tier: str) -> VideoSettings | None:
        """A ``quality_tier_request`` for this bot: applied even if unchanged.

        Returns None only for an unknown tier.
        """
        if tier not in TIERS:
            logger.warning("unknown requested tier %r ignored", tier)
            return None
        self.tier = tier
        return self.current()

    def quality_changed(self, quality: str) -> VideoSettings | None:
        """``quality_changed``: a new ceiling; None if the settings stay the same."""
        return self._apply(lambda: setattr(self, "quality", quality))

    def adaptive_changed(self, enabled: bool) -> VideoSettings | None:
        """``adaptive_quality_changed``: off makes this bot active."""
        return self._apply(lambda: setattr(self, "adaptive", enabled))

    def with_source(self, width: int, height: int, fps: int) -> VideoSettings:
        """Take a new source size and rate; the settings for it."""
        self.source_width, self.source_height, self.source_fps = width, height, fps
        return self.current()

    def _apply(self, change: Callable[[], None]) -> VideoSettings | None:
        before = self.current()
        change()
        after = self.current()
        return None if after == before else after


def describe(settings: VideoSettings) -> str:
    """One line for logs: ``viewer 640x480 5 fps 150 kbps +snapshots``."""
    parts = [settings.tier]
    if settings.paused:
        parts.append("paused")
    else:
        parts.append(f"{settings.width}x{settings.height} {settings.fps} fps")
        parts.append(f"{settings.max_bitrate // 1000} kbps")
    if settings.static:
        parts.append("static")
    if settings.snapshots:
        parts.append("+snapshots")
    return " ".join(parts)
