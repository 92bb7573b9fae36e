"""Thresholds to a verdict, and the verdict as JUnit XML and HTML."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from callbot.qa.command import describe
from callbot.qa.junit import junit_xml
from callbot.qa.report_html import render
from callbot.qa.verdict import Thresholds, checks_json, evaluate, verdict


def report(fps: float, freeze: float, latency: float | None) -> dict[str, Any]:
    wire = {"loss": 0.0, "wire_loss": 0.01}
    return {
        "room_id": "r",
        "user_id": "qa",
        "duration": 10.0,
        "tracks": [
            {
                "track_id": "v1",
                "kind": "video",
                "user_id": "pub",
                "frames": 300,
                "fps": {"mean": fps},
                "fps_series": [{"at": 1.0, "fps": fps}, {"at": 2.0, "fps": fps}],
                "freezes": {"total_seconds": freeze},
                "latency_ms": {"median": latency},
                "latency_series": [{"at": 1.0, "latency_ms": latency or 0}],
                "wire": wire,
                "wire_series": [
                    {"at": 1.0, "bitrate": 500_000, "jitter_ms": 3.0},
                    {"at": 2.0, "bitrate": 520_000, "jitter_ms": 4.0},
                ],
            }
        ],
        "participants": [
            {
                "user_id": "pub",
                "av_offset_ms": None,
                "mos": {"mos": 4.3},
                "join": {"joined_at": 0.1, "first_frame_at": 0.4},
                "tiers": [{"tier": "active", "start": 0.0, "end": 10.0}],
                "speaking": {"agreement": 1.0},
                "snapshot_rate_while_viewer": None,
            }
        ],
    }


def test_a_good_call_passes_and_unmeasured_checks_do_not_fail() -> None:
    checks = evaluate(report(30, 0.0, None), Thresholds())
    assert verdict(checks)
    by_name = {c.name: c for c in checks}
    assert by_name["latency"].passed is None
    assert by_name["A/V offset"].passed is None
    assert by_name["frame rate"].passed is True


def test_each_threshold_fails_its_own_check() -> None:
    checks = evaluate(report(12, 2.1, 420), Thresholds())
    failed = sorted(c.name for c in checks if c.passed is False)
    assert failed == ["frame rate", "freeze time", "latency"]
    assert not verdict(checks)


def test_a_call_without_media_fails() -> None:
    empty = {"tracks": [], "participants": []}
    assert not verdict(evaluate(empty, Thresholds()))


def test_thresholds_from_a_file_and_none_switches_a_check_off(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"min_fps": 10, "max_freeze_seconds": None}))
    thresholds = Thresholds.from_file(path)
    checks = evaluate(report(12, 5.0, 100), thresholds)
    assert verdict(checks)
    assert "freeze time" not in {c.name for c in checks}
    path.write_text(json.dumps({"min_fps": 10, "max_fsp": 3}))
    with pytest.raises(ValidationError):
        Thresholds.from_file(path)


def test_junit_has_one_case_per_check_and_the_failures() -> None:
    checks = evaluate(report(12, 0.0, None), Thresholds())
    root = ET.fromstring(junit_xml(checks, suite="qa.r", seconds=10.0))
    suite = root.find("testsuite")
    assert suite is not None
    assert suite.get("tests") == str(len(checks))
    assert suite.get("failures") == "1" and suite.get("skipped") == "2"
    (failure,) = root.iter("failure")
    assert "frame rate" in (failure.get("message") or "")


def test_html_report_has_the_plots_and_the_verdict() -> None:
    data = report(30, 0.0, 80)
    checks = evaluate(data, Thresholds())
    data["checks"] = checks_json(checks)
    data["passed"] = verdict(checks)
    page = render(data)
    assert page.count("<svg") == 5
    for title in ("Frame rate", "Bitrate", "Jitter", "latency", "Tier timeline"):
        assert title in page
    assert "PASS" in page and "<polyline" in page
    lines = [describe(c) for c in data["checks"]]
    assert any(line.startswith("  ok   frame rate") for line in lines)


def test_check_lines_read_naturally() -> None:
    data = report(30, 0.0, 80)
    data["tracks"][0]["wire"] = {"loss": 0.0, "wire_loss": 0.0}
    lines = [describe(c) for c in checks_json(evaluate(data, Thresholds()))]
    assert "  ok   tracks received in the call: 1 (at least 1)" in lines
    assert (
        "  ok   frame rate of video track v1 of pub: 30 fps (at least 20 fps)" in lines
    )
    assert "  ok   packet loss of video track v1 of pub: 0 (at most 0.02)" in lines
    assert "  ok   latency of video track v1 of pub: 80 ms (at most 300 ms)" in lines
    assert all("  " not in line[7:] for line in lines)
    failed = evaluate(report(12, 0.0, 80), Thresholds())
    (fps,) = [c for c in failed if c.name == "frame rate"]
    assert fps.describe() == (
        "frame rate of video track v1 of pub: 12 fps (at least 20 fps) FAILED"
    )
