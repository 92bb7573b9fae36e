"""Thresholds and the pass/fail verdict of a QA report."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Thresholds(BaseModel):
    """Limits a call must keep to pass; None switches a check off.

    Defaults suit an active call (30 fps publishers) on a good network.
    """

    model_config = ConfigDict(extra="forbid")

    min_fps: float | None = Field(default=20.0, ge=0)
    """Mean frame rate of each video track."""
    max_freeze_seconds: float | None = Field(default=1.0, ge=0)
    """Total time of freezes (gaps over 300 ms) of each video track."""
    max_loss: float | None = Field(default=0.02, ge=0, le=1)
    """Packet loss after NACK/RTX repair of each track (a share, 0..1)."""
    max_wire_loss: float | None = Field(default=None, ge=0, le=1)
    """Packet loss on the wire, before repair (a share, 0..1)."""
    max_latency_ms: float | None = Field(default=300.0, ge=0)
    """Median glass-to-glass latency of each track with the pattern."""
    max_av_offset_ms: float | None = Field(default=150.0, ge=0)
    """Absolute A/V sync offset of each participant."""
    min_mos: float | None = Field(default=3.5, ge=1, le=4.5)
    """E-model MOS estimate of each participant's audio."""

    @classmethod
    def from_file(cls, path: str | Path) -> Thresholds:
        """Thresholds from a JSON file (keys as the fields; missing ones default)."""
        return cls.model_validate(json.loads(Path(path).read_text()))


@dataclass(frozen=True)
class Check:
    """One threshold applied to one track or participant."""

    name: str
    subject: str
    value: float | None
    limit: float
    unit: str
    passed: bool | None
    """None: not measured (no pattern, no audio), so neither passed nor failed."""
    most: bool = True
    """True: the limit is a maximum; False: a minimum."""

    def describe(self) -> str:
        if self.passed is None:
            return f"{title(asdict(self))}: not measured"
        verb = "ok" if self.passed else "FAILED"
        return f"{figure(asdict(self))} {verb}"


def title(check: dict[str, Any]) -> str:
    """``frame rate of video track v1 of alice``, ``tracks received in the call``."""
    if check["subject"] == "call":
        return f"{check['name']} in the call"
    return f"{check['name']} of {check['subject']}"


def bound(check: dict[str, Any]) -> str:
    """``at most 300 ms`` or ``at least 20 fps``."""
    unit = f" {check['unit']}" if check["unit"] else ""
    word = "at most" if check.get("most", True) else "at least"
    return f"{word} {check['limit']:g}{unit}"


def figure(check: dict[str, Any]) -> str:
    """One measured check of report.json: what, how much, and its limit."""
    unit = f" {check['unit']}" if check["unit"] else ""
    return f"{title(check)}: {check['value']:g}{unit} ({bound(check)})"


def _at_least(value: float | None, limit: float) -> bool | None:
    return None if value is None else value >= limit


def _at_most(value: float | None, limit: float) -> bool | None:
    return None if value is None else value <= limit


def evaluate(report: dict[str, Any], thresholds: Thresholds) -> list[Check]:
    """Every check of ``report`` (as built by the QA plugin) against ``thresholds``."""
    checks: list[Check] = []
    t = thresholds

    def add(
        name: str,
        subject: str,
        value: float | None,
        limit: float | None,
        unit: str,
        most: bool,
    ) -> None:
        if limit is None:
            return
        passed = _at_most(value, limit) if most else _at_least(value, limit)
        checks.append(Check(name, subject, value, limit, unit, passed, most))

    received = [x for x in report.get("tracks", []) if x.get("frames", 0) > 0]
    checks.append(
        Check(
            "tracks received",
            "call",
            float(len(received)),
            1,
            "",
            bool(received),
            False,
        )
    )
    for track in report.get("tracks", []):
        subject = f"{track['kind']} track {track['track_id']} of {track['user_id']}"
        wire = track.get("wire", {})
        if track["kind"] == "video":
            add("frame rate", subject, track["fps"]["mean"], t.min_fps, "fps", False)
            add(
                "freeze time",
                subject,
                track["freezes"]["total_seconds"],
                t.max_freeze_seconds,
                "s",
                True,
            )
        add("packet loss", subject, wire.get("loss"), t.max_loss, "", True)
        add("wire loss", subject, wire.get("wire_loss"), t.max_wire_loss, "", True)
        add(
            "latency",
            subject,
            track.get("latency_ms", {}).get("median"),
            t.max_latency_ms,
            "ms",
            True,
        )
    for participant in report.get("participants", []):
        subject = f"participant {participant['user_id']}"
        offset = participant.get("av_offset_ms")
        add(
            "A/V offset",
            subject,
            abs(offset) if offset is not None else None,
            t.max_av_offset_ms,
            "ms",
            True,
        )
        mos = participant.get("mos") or {}
        add("MOS", subject, mos.get("mos"), t.min_mos, "", False)
    return checks


def verdict(checks: list[Check]) -> bool:
    """Pass when no check failed (unmeasured checks do not fail)."""
    return all(check.passed is not False for check in checks)


def checks_json(checks: list[Check]) -> list[dict[str, Any]]:
    return [asdict(check) for check in checks]
