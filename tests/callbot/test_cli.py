"""The callbot command line: parsing, command discovery, summaries."""

from __future__ import annotations

import argparse
import importlib.metadata
from typing import Any

import pytest

from callbot import cli


class EchoCommand:
    name = "echo"
    help = "say something"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("words", nargs="*")

    def run(self, args: argparse.Namespace) -> int:
        print(" ".join(args.words))
        return 7


def parse(*argv: str) -> argparse.Namespace:
    return cli.build_parser(list(cli.BUILTIN_COMMANDS)).parse_args(argv)


def test_server_takes_host_port_and_repeated_rooms() -> None:
    args = parse("server", "--host", "127.0.0.1", "--port", "4100", "--room", "a")
    assert (args.host, args.port, args.rooms) == ("127.0.0.1", 4100, ["a"])
    assert isinstance(args.handler, cli.ServerCommand)

    args = parse("server", "--room", "a", "--room", "b")
    assert (args.port, args.rooms) == (4000, ["a", "b"])

    assert parse("server").rooms == []


def test_run_takes_the_bot_options() -> None:
    args = parse(
        "run",
        "--server",
        "ws://127.0.0.1:4000/socket",
        "--room",
        "lobby",
        "--user-id",
        "bot-1",
        "--name",
        "Bot 1",
        "--duration",
        "2.5",
    )

    assert args.server == "ws://127.0.0.1:4000/socket"
    assert (args.room, args.user_id, args.name, args.duration) == (
        "lobby",
        "bot-1",
        "Bot 1",
        2.5,
    )
    assert isinstance(args.handler, cli.RunCommand)


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--room", "lobby", "--user-id", "u"],
        ["run", "--server", "ws://h/socket", "--user-id", "u"],
        ["run", "--server", "ws://h/socket", "--room", "lobby"],
        ["server", "--port", "many"],
        ["--log-level", "LOUD", "server"],
        [],
    ],
)
def test_bad_command_lines_exit_with_usage(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse(*argv)

    assert exited.value.code == 2
    assert "usage: callbot" in capsys.readouterr().err


def test_log_level_is_case_insensitive_and_unset_by_default() -> None:
    assert parse("--log-level", "debug", "server").log_level == "DEBUG"
    assert parse("server").log_level is None


def test_the_control_plane_commands_come_from_entry_points() -> None:
    found = {c.name: c for c in cli.discover_commands()}

    assert {"serve", "demo"} <= set(found)
    assert all(isinstance(c, cli.Command) for c in found.values())
    parser = cli.build_parser(cli.all_commands())
    args = parser.parse_args(["serve", "--host", "0.0.0.0", "--port", "8080"])
    assert (args.host, args.port, args.handler) == ("0.0.0.0", 8080, found["serve"])
    demo = parser.parse_args(["demo", "--json", "--duration", "6"])
    assert (demo.json, demo.duration) == (True, 6.0)


class FakeEntryPoint:
    def __init__(self, name: str, value: object, broken: bool = False) -> None:
        self.name = name
        self.value = f"somewhere:{name}"
        self._object = value
        self._broken = broken

    def load(self) -> object:
        if self._broken:
            raise ImportError("no module named somewhere")
        return self._object


def test_discovery_skips_broken_and_foreign_entry_points_and_name_clashes(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class Impostor:
        name = "server"
        help = "pretends to be the built-in"

        def add_arguments(self, parser: argparse.ArgumentParser) -> None:
            pass

        def run(self, args: argparse.Namespace) -> int:
            return 99

    entry_points = [
        FakeEntryPoint("echo", EchoCommand()),
        FakeEntryPoint("broken", None, broken=True),
        FakeEntryPoint("function", print),
        FakeEntryPoint("server", Impostor()),
    ]

    def fake_entry_points(**kwargs: Any) -> list[FakeEntryPoint]:
        assert kwargs == {"group": "callbot.commands"}
        return entry_points

    monkeypatch.setattr(importlib.metadata, "entry_points", fake_entry_points)

    names = [c.name for c in cli.all_commands()]

    assert names == ["server", "run", "echo"]
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "cannot load command broken" in messages
    assert "function" in messages and "is not a callbot command" in messages
    assert "second command named 'server'" in messages


def test_main_runs_a_discovered_command_and_returns_its_exit_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "discover_commands", lambda: [EchoCommand()])

    assert cli.main(["echo", "hello", "there"]) == 7
    assert capsys.readouterr().out == "hello there\n"


def test_the_run_summary_names_status_peers_and_media() -> None:
    text = cli.format_summary(
        "left",
        {
            "endpoint_id": "bot-1_12",
            "participants": ["bot-2"],
            "tracks": [
                {
                    "direction": "outbound",
                    "kind": "video",
                    "frames": 300,
                    "packets": 900,
                },
                {
                    "direction": "inbound",
                    "kind": "video",
                    "from_user_id": "bot-2",
                    "frames": 290,
                    "packets": 870,
                    "width": 640,
                    "height": 480,
                },
                {
                    "direction": "inbound",
                    "kind": "audio",
                    "from_user_id": "bot-2",
                    "frames": 490,
                    "packets": 490,
                    "seconds": 9.8,
                },
            ],
        },
    )

    assert text.splitlines() == [
        "status: left",
        "endpoint: bot-1_12",
        "participants: bot-2",
        "  sent video: 300 frames 900 packets",
        "  received video from bot-2: 290 frames 870 packets 640x480",
        "  received audio from bot-2: 490 frames 490 packets 9.8 s",
    ]


def test_the_log_level_can_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[str | None] = []

    class Probe(EchoCommand):
        def run(self, args: argparse.Namespace) -> int:
            seen.append(args.log_level)
            return 0

    monkeypatch.setattr(cli, "discover_commands", lambda: [Probe()])
    monkeypatch.setenv("CALLBOT_LOG_LEVEL", "warning")
    assert cli.main(["echo"]) == 0
    assert cli.main(["--log-level", "ERROR", "echo"]) == 0
    assert seen == ["WARNING", "ERROR"]

    monkeypatch.setenv("CALLBOT_LOG_LEVEL", "chatty")
    with pytest.raises(SystemExit) as exited:
        cli.main(["echo"])
    assert exited.value.code == 2
    assert "CALLBOT_LOG_LEVEL must be one of" in capsys.readouterr().err


def test_run_plugins_with_their_config_in_order() -> None:
    from callbot.cli import plugin_specs

    specs = plugin_specs(
        [
            "run",
            "--room",
            "lobby",
            "--plugin",
            "recorder",
            "--plugin-config",
            "directory=/tmp/rec",
            "--plugin-config=flush_interval=0.5",
        ]
    )
    assert [(s.name, s.config) for s in specs] == [
        ("recorder", {"directory": "/tmp/rec", "flush_interval": 0.5})
    ]


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["--plugin", "nope"], "unknown plugin 'nope'"),
        (
            ["--plugin", "recorder", "--plugin-config", "flush_interval=9"],
            "plugin 'recorder': bad config: flush_interval",
        ),
        (["--plugin-config", "a=1"], "must follow the --plugin"),
    ],
)
def test_run_refuses_bad_plugins_before_joining(
    words: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from callbot.cli import main

    argv = ["run", "--server", "ws://127.0.0.1:9/socket", "--room", "r"]
    code = main([*argv, "--user-id", "u", *words])
    assert code == 2
    assert message in capsys.readouterr().err


def test_server_switches_default_to_the_real_behaviour_and_reach_the_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from callbot.server import app
    from callbot.server.settings import ServerSettings

    seen: list[ServerSettings] = []

    async def fake_serve(settings: ServerSettings) -> None:
        seen.append(settings)

    monkeypatch.setattr(app, "serve", fake_serve)
    assert cli.main(["server", "--port", "0"]) == 0
    real = seen[-1]
    assert real.admin_port is None
    assert real.adaptive_quality and real.duplicate_pushes and real.strict_join_ref
    assert real.crash_on_bad_event and real.quality_tier_request_crashes
    assert real.integer_foundations_only

    argv = [
        "server",
        "--admin-port",
        "4001",
        "--no-adaptive-quality",
        "--no-duplicate-pushes",
        "--lenient-join-ref",
        "--no-crash-on-bad-event",
        "--no-tier-request-crash",
        "--hex-foundations-ok",
    ]
    assert cli.main(argv) == 0
    lenient = seen[-1]
    assert lenient.admin_port == 4001
    assert not any(
        (
            lenient.adaptive_quality,
            lenient.duplicate_pushes,
            lenient.strict_join_ref,
            lenient.crash_on_bad_event,
            lenient.quality_tier_request_crashes,
            lenient.integer_foundations_only,
        )
    )


def test_help_shows_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("server", "--help")
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 127.0.0.1)" in text and "(default: 4000)" in text
    with pytest.raises(SystemExit):
        parse("run", "--help")
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: high)" in text and "(default: browser)" in text
    assert "(default: None)" not in text


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["--sensors", "{not json"], "callbot run: --sensors: Invalid JSON"),
        (
            ["--sensors", '{"source": {"kind": "local"}, "colour": 1}'],
            "--sensors: colour: Extra inputs are not permitted",
        ),
        (["--sensors", "@/nonexistent/sensors.json"], "--sensors: cannot read"),
        (["--viewer-token", "tok"], "--viewer-token needs --overlay-sensor"),
        (["--overlay-sensor", "hr-1"], "--overlay-sensor needs --viewer-token"),
    ],
)
def test_run_refuses_bad_sensor_options_with_one_line_and_exit_2(
    words: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", "--server", "ws://127.0.0.1:9/socket", "--room", "r"]
    assert cli.main([*argv, "--user-id", "u", *words]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:4000/socket", "127.0.0.1:4000", "ws:///socket"]
)
def test_run_refuses_a_server_that_is_not_a_websocket_url(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["run", "--server", url, "--room", "r", "--user-id", "u"]) == 2
    assert "--server must be a ws:// or wss:// URL" in capsys.readouterr().err


def test_library_info_lines_are_hidden_unless_debug() -> None:
    import logging

    cli.quiet_libraries("INFO")
    assert logging.getLogger("aioice.ice").getEffectiveLevel() == logging.WARNING
    assert logging.getLogger("aiortc").getEffectiveLevel() == logging.WARNING
    cli.quiet_libraries("DEBUG")
    assert logging.getLogger("aioice.ice").getEffectiveLevel() == logging.DEBUG


@pytest.mark.integration
def test_callbot_server_says_listening_once() -> None:
    import subprocess
    import sys
    import time

    process = subprocess.Popen(
        [sys.executable, "-m", "callbot.cli", "server", "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        deadline = time.monotonic() + 15
        lines = []
        while time.monotonic() < deadline:
            line = process.stderr.readline()
            lines.append(line)
            if "listening" in line or not line:
                break
        process.send_signal(2)
        _, rest = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    text = "".join(lines) + rest
    assert text.count("listening") == 1, text
    assert "reference server listening on ws://127.0.0.1:" in text
