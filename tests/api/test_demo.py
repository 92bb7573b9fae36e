"""The demo's summary and progress lines, from bot views as the API serves them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from api import demo
from api.demo import format_progress, format_summary, received, summarize


def bot_view(
    bot_id: str,
    user_id: str,
    other: str,
    *,
    status: str = "left",
    frames: int = 290,
    seconds: float = 9.8,
) -> dict[str, Any]:
    return {
        "id": bot_id,
        "user_id": user_id,
        "status": status,
        "reason": None,
        "tracks": [
            {"direction": "outbound", "kind": "video", "frames": 300},
            {
                "direction": "inbound",
                "kind": "video",
                "from_user_id": other,
                "frames": frames,
                "width": 640,
                "height": 480,
            },
            {
                "direction": "inbound",
                "kind": "audio",
                "from_user_id": other,
                "frames": 490,
                "seconds": seconds,
            },
        ],
    }


def test_received_adds_up_renegotiated_tracks_per_kind_and_sender() -> None:
    bot = bot_view("b-1", "bot-1", "bot-2", frames=100, seconds=3.0)
    bot["tracks"].append(
        {
            "direction": "inbound",
            "kind": "video",
            "from_user_id": "bot-2",
            "frames": 50,
            "width": 320,
            "height": 240,
        }
    )

    assert received(bot) == [
        {"kind": "audio", "from_user_id": "bot-2", "seconds": 3.0},
        {
            "kind": "video",
            "from_user_id": "bot-2",
            "frames": 150,
            "width": 320,
            "height": 240,
        },
    ]


def test_summary_is_ok_when_every_bot_left_with_the_others_media() -> None:
    summary = summarize(
        "lobby",
        [bot_view("b-1", "bot-1", "bot-2"), bot_view("b-2", "bot-2", "bot-1")],
    )

    assert summary["ok"] is True
    assert summary["room_id"] == "lobby"
    first = summary["bots"][0]
    assert (first["id"], first["user_id"], first["final_status"]) == (
        "b-1",
        "bot-1",
        "left",
    )
    assert {"kind": "audio", "from_user_id": "bot-2", "seconds": 9.8} in first[
        "received"
    ]


def test_summary_is_not_ok_when_media_is_missing_or_a_bot_failed() -> None:
    no_video = bot_view("b-1", "bot-1", "bot-2", frames=0)
    no_audio = bot_view("b-1", "bot-1", "bot-2", seconds=0.0)
    failed = bot_view("b-1", "bot-1", "bot-2", status="failed")
    failed["reason"] = "worker killed by SIGKILL (exit code -9)"
    fine = bot_view("b-2", "bot-2", "bot-1")

    assert summarize("lobby", [no_video, fine])["ok"] is False
    assert summarize("lobby", [no_audio, fine])["ok"] is False
    failed_summary = summarize("lobby", [failed, fine])
    assert failed_summary["ok"] is False
    assert failed_summary["bots"][0]["reason"].startswith("worker killed by SIGKILL")
    assert summarize("lobby", [])["ok"] is False


def test_progress_and_summary_read_in_user_terms() -> None:
    bots = [bot_view("b-1", "bot-1", "bot-2"), bot_view("b-2", "bot-2", "bot-1")]

    line = format_progress(3.02, bots)
    text = format_summary(summarize("lobby", bots))

    assert line == (
        "[   3 s] bot-1 left, sent 300 frames, audio 9.8 s,"
        " video 290 frames 640x480 | bot-2 left, sent 300 frames, audio 9.8 s,"
        " video 290 frames 640x480"
    )
    assert "    received video from bot-2: 290 frames at 640x480" in text
    assert text.endswith("ok: every bot received the others' audio and video and left")


async def test_json_demo_ends_with_a_json_line_even_when_it_fails(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def broken(duration: float, log_level: str, progress: Any) -> dict[str, Any]:
        raise RuntimeError("the reference server did not start")

    monkeypatch.setattr(demo, "_run", broken)

    summary = await demo.run_demo(as_json=True)

    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last) == summary
    assert summary["ok"] is False
    assert summary["error"] == "RuntimeError: the reference server did not start"


@pytest.mark.parametrize("as_json", [True, False])
async def test_json_demo_prints_only_the_summary_on_stdout(
    as_json: bool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def quick(duration: float, log_level: str, progress: Any) -> dict[str, Any]:
        print("reference server on ws://127.0.0.1:1/socket", file=progress)
        print("removing the bots", file=progress)
        return demo.failed_summary("stopped early")

    monkeypatch.setattr(demo, "_run", quick)

    summary = await demo.run_demo(as_json=as_json)

    captured = capsys.readouterr()
    if as_json:
        assert captured.out.count("\n") == 1
        assert json.loads(captured.out) == summary
        assert "removing the bots" in captured.err
    else:
        assert captured.out.startswith("reference server on ")
        assert "removing the bots" in captured.out
        assert "removing the bots" not in captured.err


def test_progress_and_summary_name_tier_changes_and_snapshots() -> None:
    speaker = {
        **bot_view("b-1", "bot-1", "bot-2"),
        "tier": "active",
        "speaking": True,
        "snapshots_received": {"bot-2": 4},
    }
    viewer = {
        **bot_view("b-2", "bot-2", "bot-1"),
        "tier": "viewer",
        "speaking": False,
        "snapshots_received": {},
    }
    tiers = {
        "b-1": [
            {"tier": "viewer", "at": 0.7},
            {"tier": "active", "at": 0.9},
            {"tier": "recent", "at": 4.5},
        ],
        "b-2": [{"tier": "viewer", "at": 0.8}],
    }

    line = format_progress(3.0, [speaker, viewer])
    summary = summarize("lobby", [speaker, viewer], tiers)
    text = format_summary(summary)

    assert line.startswith("[   3 s] bot-1 left, tier active (speaking), sent 300")
    assert "audio 9.8 s, video 290 frames 640x480, snapshots 4 from bot-2 |" in line
    assert " | bot-2 left, tier viewer, sent 300 frames," in line
    first, second = summary["bots"]
    assert first["tier_changes"] == tiers["b-1"]
    assert first["snapshots_received"] == {"bot-2": 4}
    assert second["snapshots_received"] == {}
    assert summary["ok"] is True
    assert "    tiers: viewer -> active -> recent" in text
    assert "    snapshots received: 4 from bot-2" in text
    assert "    snapshots received: none" in text


@pytest.mark.integration
async def test_the_demo_shows_the_speaker_going_active_and_the_viewers_snapshots(
    capsys: pytest.CaptureFixture[str],
) -> None:
    summary = await demo.run_demo(duration=8.0, as_json=True)

    captured = capsys.readouterr()
    out = captured.out.splitlines()
    assert len(out) == 1 and json.loads(out[0]) == summary
    progress = captured.err.splitlines()
    assert summary["ok"] is True, summary
    speaker, viewer = summary["bots"]
    tiers = [change["tier"] for change in speaker["tier_changes"]]
    assert "active" in tiers
    assert tiers[-1] == "recent"
    assert [change["tier"] for change in viewer["tier_changes"]] == ["viewer"]
    assert speaker["snapshots_received"]["bot-2"] > 0
    assert any("bot-1: tier " in line and "-> active" in line for line in progress)
