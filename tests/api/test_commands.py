"""The control plane's commands: settings from the environment and options."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import httpx
import pytest

from api.commands import ServeCommand, build_app, demo_command, serve_command
from api.keys import create_key


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


async def test_serve_builds_the_app_with_every_setting_of_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CALLBOT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CALLBOT_SERVER_HOSTS", '["sensocto.test"]')
    monkeypatch.setenv("CALLBOT_MAX_BODY_BYTES", "2048")
    app = build_app(serve_command.settings(parse()))
    _, key = create_key(app.state.store, "tests")

    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://cp",
            headers={"Authorization": f"Bearer {key}"},
        ) as client,
    ):
        loopback = await client.post(
            "/bots", json={"server_url": "ws://127.0.0.1:4000/socket", "room_id": "r"}
        )
        large = await client.post(
            "/bots",
            json={"server_url": "ws://sensocto.test/socket", "room_id": "r" * 3000},
        )

    assert loopback.status_code == 422
    assert loopback.json()["error"]["code"] == "host_not_allowed"
    assert large.status_code == 413
    assert (tmp_path / "callbot.db").exists()


def test_alembic_info_lines_only_at_debug() -> None:
    import logging

    from api.commands import quiet_migrations

    alembic = logging.getLogger("alembic")
    try:
        quiet_migrations(None)
        assert not logging.getLogger("alembic.runtime.migration").isEnabledFor(
            logging.INFO
        )
        quiet_migrations("INFO")
        assert alembic.level == logging.WARNING
        quiet_migrations("DEBUG")
        assert alembic.level == logging.DEBUG
    finally:
        alembic.setLevel(logging.NOTSET)


@pytest.mark.integration
async def test_keys_create_list_revoke_and_a_revoked_key_gets_401(
    tmp_path: Path,
) -> None:
    import subprocess
    import sys

    from api.app import create_app
    from api.store import Store
    from tests.api.test_app import FakeLauncher

    callbot = str(Path(sys.executable).with_name("callbot"))
    env = {**os.environ, "CALLBOT_DATA_DIR": str(tmp_path)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [callbot, "keys", *args], env=env, capture_output=True, text=True
        )

    key = run("create", "--name", "ci").stdout.strip()
    assert key.startswith("cb_")
    [line] = run("list").stdout.splitlines()
    key_id, name, _, state = line.split("\t")
    assert (name, state) == ("ci", "active")

    store = Store(f"sqlite:///{tmp_path / 'callbot.db'}")
    app = create_app(FakeLauncher(), store=store)
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://cp",
        headers={"Authorization": f"Bearer {key}"},
    )
    async with client:
        assert (await client.get("/bots")).status_code == 200
        assert run("revoke", key_id).returncode == 0
        assert run("list").stdout.split("\t")[-1].strip() == "revoked"
        refused = await client.get("/bots")
    assert refused.status_code == 401
    missing = run("revoke", "k-nothere")
    assert missing.returncode == 1
    assert "no key with id k-nothere" in missing.stderr
    store.close()
