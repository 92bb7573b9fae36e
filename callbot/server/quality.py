"""Call quality by participant count (Sensocto's ``QualityManager``)."""

from __future__ import annotations

from enum import StrEnum


class Quality(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    MINIMAL = "minimal"


def calculate_quality(participant_count: int) -> Quality:
    """The level every participant gets; network quality is always "good"."""
    if participant_count <= 2:
        return Quality.HIGH
    if participant_count <= 4:
        return Quality.MEDIUM
    if participant_count <= 9:
        return Quality.LOW
    return Quality.MINIMAL


def quality_profile(value: object) -> str:
    """``set_quality``'s stored profile: high/medium/low, anything else ``auto``."""
    if isinstance(value, str) and value in ("high", "medium", "low"):
        return value
    return "auto"
