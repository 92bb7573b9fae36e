"""``callbot run --audio FILE`` and the speaking and tier lines it prints."""

from __future__ import annotations

from pathlib import Path

import pytest

from callbot import cli
from tests.callbot.speech_signals import DATA

RUN = ["run", "--server", "ws://127.0.0.1:9/socket", "--room", "r", "--user-id", "u"]


def test_run_takes_an_audio_file_attention_and_tier_profile() -> None:
    parser = cli.build_parser(list(cli.BUILTIN_COMMANDS))
    args = parser.parse_args(
        [*RUN, "--audio", str(DATA / "speech-en-us-16k.wav"), "--attention", "low"]
    )
    assert args.audio.endswith("speech-en-us-16k.wav")
    assert (args.attention, args.tier_profile) == ("low", "browser")
    defaults = parser.parse_args(RUN)
    assert (defaults.audio, defaults.attention) == (None, "high")


def test_run_refuses_an_unreadable_audio_file_before_joining(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    assert cli.main([*RUN, "--audio", str(bad)]) == 2
    assert "notes.wav" in capsys.readouterr().err


def test_live_lines_for_speaking_and_tier(capsys: pytest.CaptureFixture[str]) -> None:
    cli.print_live_event({"type": "event", "event": "speaking", "speaking": True})
    cli.print_live_event(
        {
            "type": "event",
            "event": "video_settings",
            "tier": "viewer",
            "fps": 5,
            "max_bitrate": 150_000,
            "snapshots": True,
        }
    )
    cli.print_live_event({"type": "stats"})
    assert capsys.readouterr().out.splitlines() == [
        "speaking",
        "tier viewer: video 5 fps, 150 kbps, snapshots",
    ]


def test_summary_tells_tier_and_snapshots() -> None:
    text = cli.format_summary(
        "left",
        {
            "participants": ["a"],
            "tracks": [],
            "tier": "viewer",
            "attention": "high",
            "snapshots_sent": 12,
            "snapshots_received": {"a": 9},
        },
    )
    assert "tier: viewer, attention: high, snapshots sent: 12, received: 9" in text
