"""REST bodies: what POST /bots accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from api.app import create_app
from api.keys import create_key
from api.models import CreateBot
from api.record import BotRecord
from api.store import Store

BODY = {"server_url": "ws://127.0.0.1:4000/socket", "room_id": "lobby"}


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The files root plugin paths given over the API are confined to."""
    monkeypatch.setenv("CALLBOT_FILES_DIR", str(tmp_path / "files"))
    return tmp_path / "files"


def test_create_bot_takes_plugins_with_their_config(files: Path) -> None:
    body = CreateBot.model_validate(
        {**BODY, "plugins": [{"name": "recorder", "config": {"directory": "r"}}]}
    )
    assert body.plugins[0].name == "recorder"
    assert body.plugins[0].config == {"directory": str(files / "r")}


@pytest.mark.parametrize(
    ("plugins", "message"),
    [
        ([{"name": "nope"}], "unknown plugin 'nope'"),
        (
            [{"name": "recorder", "config": {"audio_container": "mp3"}}],
            "bad config: audio_container",
        ),
    ],
)
def test_create_bot_refuses_unknown_plugins_and_bad_config(
    plugins: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        CreateBot.model_validate({**BODY, "plugins": plugins})


class Launcher:
    def __init__(self) -> None:
        self.started: list[BotRecord] = []

    @property
    def ready(self) -> bool:
        return True

    async def start(self, record: BotRecord) -> None:
        self.started.append(record)

    async def leave(self, record: BotRecord) -> None:
        pass

    async def close(self) -> None:
        pass


async def test_post_bots_answers_422_for_an_unknown_plugin_and_passes_plugins(
    files: Path,
) -> None:
    launcher = Launcher()
    store = Store("sqlite://")
    _, key = create_key(store, "tests")
    app = create_app(launcher, store=store)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app)
    auth = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://t", headers=auth
    ) as client:
        bad = await client.post("/bots", json={**BODY, "plugins": [{"name": "x"}]})
        good = await client.post(
            "/bots", json={**BODY, "plugins": [{"name": "recorder"}]}
        )
    assert bad.status_code == 422
    assert "unknown plugin 'x'" in bad.json()["error"]["message"]
    assert good.status_code == 201
    assert len(launcher.started) == 1  # only the good one was started
    config = launcher.started[0].worker_config()
    assert config["plugins"] == [
        {
            "name": "recorder",
            "config": {"directory": str(files / "recordings")},
            "essential": None,
        }
    ]
