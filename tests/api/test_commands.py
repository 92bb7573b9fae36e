"""The control plane's commands: settings from the environment and options."""

from __future__ import annotations

import argparse

import pytest

from api.commands import ServeCommand, demo_command, serve_command


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    serve_command.add_arguments(parser)
    return parser.parse_args(argv)


def test_serve_defaults_without_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HOST", "PORT", "MAX_BOTS", "LEAVE_TIMEOUT", "ICE_ADDRESSES"):
        monkeypatch.delenv(f"CALLBOT_{name}", raising=False)

    settings = ServeCommand().settings(parse())

    assert (settings.host, settings.port, settings.max_bots) == ("127.0.0.1", 8080, 50)
    assert settings.leave_timeout == 10.0
    assert settings.ice_addresses == ["127.0.0.1"]


def test_serve_reads_the_environment_and_options_win(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CALLBOT_HOST", "0.0.0.0")
    monkeypatch.setenv("CALLBOT_PORT", "9000")
    monkeypatch.setenv("CALLBOT_MAX_BOTS", "5")
    monkeypatch.setenv("CALLBOT_ICE_ADDRESSES", '["10.1.2.3"]')

    from_env = serve_command.settings(parse())
    from_options = serve_command.settings(
        parse("--port", "9100", "--ice-address", "10.9.9.9", "--ice-address", "::1")
    )

    assert (from_env.host, from_env.port, from_env.max_bots) == ("0.0.0.0", 9000, 5)
    assert from_env.ice_addresses == ["10.1.2.3"]
    assert (from_options.host, from_options.port) == ("0.0.0.0", 9100)
    assert from_options.ice_addresses == ["10.9.9.9", "::1"]


def test_demo_options() -> None:
    parser = argparse.ArgumentParser()
    demo_command.add_arguments(parser)

    assert (parser.parse_args([]).duration, parser.parse_args([]).json) == (10.0, False)
    assert parser.parse_args(["--duration", "6", "--json"]).duration == 6.0
