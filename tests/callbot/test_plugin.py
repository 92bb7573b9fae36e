import asyncio
import logging
from typing import Any

import av
import pytest

from callbot.bot.config import BotConfig, PluginSpec
from callbot.bot.plugin import (
    Plugin,
    PluginConfig,
    PluginContext,
    PluginError,
    PluginHost,
    RemoteTrack,
    RemoteTrackInfo,
    load_plugin_class,
    parse_config_pairs,
    validate_specs,
)
from callbot.rtc.tap import EncodedFrame
from plugins.recorder import Recorder


class NotesConfig(PluginConfig):
    label: str = "notes"
    fail_in: str | None = None


class Notes(Plugin):
    """Writes down every hook call; fails where its config says."""

    name = "notes"
    config_model = NotesConfig

    def __init__(self, config: PluginConfig, context: PluginContext) -> None:
        super().__init__(config, context)
        assert isinstance(config, NotesConfig)
        self.fail_in = config.fail_in
        self.calls: list[tuple[Any, ...]] = []
        self.frames: list[int] = []

    def _note(self, *call: Any) -> None:
        self.calls.append(call)
        if call[0] == self.fail_in:
            raise RuntimeError(f"broken {call[0]}")

    def on_joined(self, endpoint_id: str) -> None:
        self._note("joined", endpoint_id)

    async def on_participant_joined(
        self, user_id: str, endpoint_id: str, display_name: str | None
    ) -> None:
        await asyncio.sleep(0.01)  # a slow async hook keeps the order
        self._note("participant_joined", user_id)

    def on_track_added(self, track: RemoteTrack) -> None:
        self._note("track_added", track.track_id, track.kind)
        track.on_encoded(self.on_frame)

    def on_frame(self, frame: EncodedFrame) -> None:
        if self.fail_in == "frame":
            raise ValueError("bad frame")
        self.frames.append(frame.timestamp)

    def on_track_ended(self, track: RemoteTrackInfo) -> None:
        self._note("track_ended", track.track_id)

    def on_tier_changed(self, user_id: str, tier: str) -> None:
        self._note("tier_changed", user_id, tier)

    async def on_leaving(self) -> None:
        self._note("leaving")


class Essential(Notes):
    name = "essential"
    essential = True


REGISTRY: dict[str, type[Plugin]] = {"notes": Notes, "essential": Essential}


def _host(
    specs: list[dict[str, Any]],
    reports: list[dict[str, Any]],
    failures: list[str] | None = None,
) -> PluginHost:
    context = PluginContext(
        "b-1", "room", "bot-1", logging.getLogger("test"), reports.append, lambda: 5.0
    )
    return PluginHost(
        [PluginSpec.model_validate(s) for s in specs],
        context,
        on_essential_failure=None if failures is None else failures.append,
        registry=REGISTRY,
    )


def _track(track_id: str = "t1", user_id: str = "bot-2") -> RemoteTrack:
    info = RemoteTrackInfo(track_id, "video", f"{user_id}_1", user_id)
    return RemoteTrack(info)


def _frame(ts: int) -> EncodedFrame:
    return EncodedFrame("video", b"\x00", ts, keyframe=False)


async def test_hooks_run_in_event_order_sync_and_async() -> None:
    reports: list[dict[str, Any]] = []
    host = _host([{"name": "notes"}], reports)
    host.start()
    host.emit("on_joined", "bot-1_1")
    host.emit("on_participant_joined", "bot-2", "bot-2_1", "Two")
    track = _track()
    host.track_added(track)
    host.emit("on_tier_changed", "bot-2", "viewer")
    await host.close()

    notes = host._plugins[0].plugin
    assert isinstance(notes, Notes)
    assert notes.calls == [
        ("joined", "bot-1_1"),
        ("participant_joined", "bot-2"),
        ("track_added", "t1", "video"),
        ("tier_changed", "bot-2", "viewer"),
        ("track_ended", "t1"),
        ("leaving",),
    ]
    assert reports == []


async def test_hook_exception_is_reported_and_the_plugin_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reports: list[dict[str, Any]] = []
    failures: list[str] = []
    host = _host(
        [{"name": "notes", "config": {"fail_in": "joined"}}], reports, failures
    )
    host.start()
    host.emit("on_joined", "bot-1_1")
    host.emit("on_tier_changed", "bot-2", "active")
    with caplog.at_level(logging.ERROR):
        await host.close()

    notes = host._plugins[0].plugin
    assert isinstance(notes, Notes)
    assert ("tier_changed", "bot-2", "active") in notes.calls
    assert ("leaving",) in notes.calls
    assert [(r["event"], r["plugin"], r["hook"]) for r in reports] == [
        ("plugin_error", "notes", "on_joined")
    ]
    assert "broken joined" in reports[0]["error"]
    assert failures == []
    assert any("plugin notes failed in on_joined" in m for m in caplog.messages)


async def test_essential_plugin_failure_asks_the_bot_to_leave() -> None:
    reports: list[dict[str, Any]] = []
    failures: list[str] = []
    host = _host(
        [{"name": "notes"}, {"name": "essential", "config": {"fail_in": "joined"}}],
        reports,
        failures,
    )
    host.start()
    host.emit("on_joined", "bot-1_1")
    await host.close()
    assert len(failures) == 1
    assert failures[0].startswith("plugin essential failed in on_joined")
    assert reports[0]["essential"] is True


async def test_spec_can_mark_a_plugin_essential() -> None:
    failures: list[str] = []
    host = _host(
        [{"name": "notes", "essential": True, "config": {"fail_in": "leaving"}}],
        [],
        failures,
    )
    host.start()
    await host.close()
    assert failures and "on_leaving" in failures[0]


async def test_failing_frame_consumer_is_isolated() -> None:
    reports: list[dict[str, Any]] = []
    host = _host(
        [{"name": "notes", "config": {"fail_in": "frame"}}, {"name": "notes"}],
        reports,
    )
    host.start()
    track = _track()
    host.track_added(track)
    await asyncio.sleep(0.05)
    for ts in (1, 2, 3):
        track.deliver_encoded(_frame(ts))
    await host.close()

    healthy = host._plugins[1].plugin
    assert isinstance(healthy, Notes)
    assert healthy.frames == [1, 2, 3]
    assert len(reports) == 3
    assert {(r["plugin"], r["hook"]) for r in reports} == {("notes", "on_encoded")}


async def test_participant_left_ends_only_their_tracks() -> None:
    host = _host([{"name": "notes"}], [])
    host.start()
    host.track_added(_track("a", "bot-2"))
    host.track_added(_track("b", "bot-3"))
    host.participant_left("bot-2")
    host.track_ended("a")  # a second end is not reported again
    await asyncio.sleep(0.05)
    notes = host._plugins[0].plugin
    assert isinstance(notes, Notes)
    assert [c for c in notes.calls if c[0] == "track_ended"] == [("track_ended", "a")]
    await host.close()
    assert [c for c in notes.calls if c[0] == "track_ended"][-1] == (
        "track_ended",
        "b",
    )


def test_recorder_is_found_through_the_entry_point() -> None:
    assert load_plugin_class("recorder") is Recorder


def test_unknown_plugin_is_a_clear_error() -> None:
    with pytest.raises(
        PluginError, match=r"unknown plugin 'nope' \(installed: .*recorder"
    ):
        validate_specs([PluginSpec(name="nope")])


def test_bad_plugin_config_names_the_field() -> None:
    with pytest.raises(PluginError, match="'recorder': bad config: flush_interval"):
        validate_specs([PluginSpec(name="recorder", config={"flush_interval": 9})])
    with pytest.raises(PluginError, match="colour: Extra inputs"):
        validate_specs([PluginSpec(name="recorder", config={"colour": "red"})])


def test_bot_config_carries_plugin_specs() -> None:
    config = BotConfig.model_validate(
        {
            "server_url": "ws://127.0.0.1:4000/socket",
            "room_id": "r",
            "plugins": [{"name": "recorder", "config": {"directory": "/tmp/x"}}],
        }
    )
    assert config.plugins[0].name == "recorder"
    assert config.plugins[0].config == {"directory": "/tmp/x"}


def test_config_pairs_parse_json_values_and_nested_keys() -> None:
    assert parse_config_pairs(
        ["directory=/tmp/rec", "flush_interval=0.5", "snapshots=false", "a.b=1"]
    ) == {
        "directory": "/tmp/rec",
        "flush_interval": 0.5,
        "snapshots": False,
        "a": {"b": 1},
    }
    with pytest.raises(PluginError, match="KEY=VALUE"):
        parse_config_pairs(["directory"])


def test_a_plugin_that_cannot_start_is_a_plugin_error(tmp_path: Any) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    spec = PluginSpec(name="recorder", config={"directory": str(blocker / "x")})
    context = PluginContext("b", "r", "u", logging.getLogger("test"))
    with pytest.raises(PluginError, match="plugin 'recorder' cannot start"):
        PluginHost([spec], context)


def test_decoded_frames_switch_decoding_on_and_reach_consumers() -> None:
    switched: list[bool] = []
    info = RemoteTrackInfo("t", "audio", "e", "u")
    track = RemoteTrack(info, set_decoding=switched.append)
    host = _host([], [])
    host.track_added(track)
    got: list[object] = []
    host.deliver_decoded("t", av.AudioFrame(format="s16", layout="mono", samples=960))
    assert not track.wants_decoded and switched == []
    track.on_decoded(got.append)
    assert switched == [True]
    frame = av.AudioFrame(format="s16", layout="mono", samples=960)
    host.deliver_decoded("t", frame)
    host.deliver_decoded("t", "not a frame")
    assert got == [frame]
