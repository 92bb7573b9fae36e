"""Host paths in plugin configs over REST: confined to the files root."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from pydantic import BaseModel, Field

from api.app import create_app
from api.hostpaths import HostPathError, confine_specs
from api.keys import create_key
from api.settings import ControlPlaneSettings
from api.store import Store
from callbot.bot.config import PluginSpec
from callbot.bot.plugin import (
    HostPath,
    Plugin,
    PluginConfig,
    ReadPath,
    WritePath,
    available_plugins,
    load_plugin_class,
)
from tests.api.test_app import FakeLauncher as Launcher

BODY = {"server_url": "ws://127.0.0.1:4000/socket", "room_id": "lobby"}
SPEECH = Path(__file__).resolve().parents[1] / "data" / "speech-en-us-16k.wav"


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    files = tmp_path / "files"
    monkeypatch.setenv("CALLBOT_FILES_DIR", str(files))
    return files


@pytest.fixture
def launcher() -> Launcher:
    return Launcher()


@pytest.fixture
async def client(launcher: Launcher, root: Path) -> AsyncIterator[httpx.AsyncClient]:
    store = Store("sqlite://")
    _, key = create_key(store, "tests")
    app = create_app(launcher, store=store)  # type: ignore[arg-type]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://t",
        headers={"Authorization": f"Bearer {key}"},
    ) as c:
        yield c


async def post(client: httpx.AsyncClient, name: str, config: dict[str, Any]) -> Any:
    body = {**BODY, "plugins": [{"name": name, "config": config}]}
    return await client.post("/bots", json=body)


def refused(response: httpx.Response) -> str:
    assert response.status_code == 422, response.text
    message: str = response.json()["error"]["message"]
    return message


# ---------------------------------------------------------------- refused


async def test_an_absolute_directory_is_refused(
    client: httpx.AsyncClient, launcher: Launcher, root: Path
) -> None:
    answer = await post(client, "recorder", {"directory": "/etc"})
    assert refused(answer) == (
        "plugins: Value error, plugin 'recorder': directory '/etc' must be"
        f" relative to the files root {root}"
    )
    assert launcher.started == []


async def test_an_absolute_file_to_publish_is_refused(
    client: httpx.AsyncClient, root: Path
) -> None:
    answer = await post(client, "player", {"file": "/etc/shadow"})
    assert refused(answer) == (
        "plugins: Value error, plugin 'player': file '/etc/shadow' must be"
        f" relative to the files root {root}"
    )


@pytest.mark.parametrize("escape", ["../outside", "calls/../../outside", ".."])
async def test_a_dotdot_escape_is_refused(
    client: httpx.AsyncClient, launcher: Launcher, root: Path, escape: str
) -> None:
    answer = await post(client, "recorder", {"directory": escape})
    assert refused(answer) == (
        f"plugins: Value error, plugin 'recorder': directory '{escape}' is"
        f" outside the files root {root}"
    )
    assert not (root.parent / "outside").exists()
    assert launcher.started == []


async def test_a_symlink_pointing_out_of_the_root_is_refused(
    client: httpx.AsyncClient, tmp_path: Path, root: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(SPEECH, elsewhere / "speech.wav")
    root.mkdir()
    (root / "shared").symlink_to(elsewhere)

    read = await post(client, "player", {"file": "shared/speech.wav"})
    write = await post(client, "recorder", {"directory": "shared/calls"})

    assert refused(read) == (
        "plugins: Value error, plugin 'player': file 'shared/speech.wav' is"
        f" outside the files root {root}"
    )
    assert refused(write) == (
        "plugins: Value error, plugin 'recorder': directory 'shared/calls' is"
        f" outside the files root {root}"
    )
    assert sorted(p.name for p in elsewhere.iterdir()) == ["speech.wav"]


async def test_a_file_to_publish_missing_from_the_root_is_refused(
    client: httpx.AsyncClient, root: Path
) -> None:
    answer = await post(client, "player", {"file": "media/clip.wav"})
    assert refused(answer) == (
        "plugins: Value error, plugin 'player': file 'media/clip.wav' does not"
        f" exist in the files root {root}"
    )


async def test_a_refused_config_makes_no_directory(
    client: httpx.AsyncClient, root: Path
) -> None:
    body = {
        **BODY,
        "plugins": [
            {"name": "recorder", "config": {"directory": "calls"}},
            {"name": "recorder", "config": {"audio_container": "mp3"}},
        ],
    }
    answer = await client.post("/bots", json=body)
    assert "plugin 'recorder': bad config: audio_container" in refused(answer)
    assert not root.exists()


async def test_a_qa_thresholds_file_is_confined_too(
    client: httpx.AsyncClient, root: Path
) -> None:
    answer = await post(client, "qa", {"thresholds_file": "/etc/passwd"})
    assert refused(answer) == (
        "plugins: Value error, plugin 'qa': thresholds_file '/etc/passwd' must"
        f" be relative to the files root {root}"
    )


# ---------------------------------------------------------------- rewritten


async def test_relative_paths_reach_the_bot_as_absolute_paths_in_the_root(
    client: httpx.AsyncClient, launcher: Launcher, root: Path
) -> None:
    (root / "media").mkdir(parents=True)
    shutil.copy(SPEECH, root / "media" / "speech.wav")
    body = {
        **BODY,
        "plugins": [
            {"name": "recorder", "config": {"directory": "calls/monday"}},
            {"name": "player", "config": {"file": "media/./speech.wav"}},
            {"name": "transcoder", "config": {"directory": "composites"}},
            {"name": "qa", "config": {"out": "qa/run-1"}},
        ],
    }

    answer = await client.post("/bots", json=body)

    assert answer.status_code == 201, answer.text
    [record] = launcher.started
    configs = {p["name"]: p["config"] for p in record.worker_config()["plugins"]}
    assert configs == {
        "recorder": {"directory": str(root / "calls" / "monday")},
        "player": {"file": str(root / "media" / "speech.wav")},
        "transcoder": {"directory": str(root / "composites")},
        "qa": {"out": str(root / "qa" / "run-1")},
    }
    # Where the bot writes, the directory holding its path is there.
    # Nothing is made for the request: the plugins make their directories.
    assert not (root / "calls").exists()
    assert not (root / "qa").exists()


async def test_defaults_are_taken_inside_the_root(
    client: httpx.AsyncClient, launcher: Launcher, root: Path
) -> None:
    body = {**BODY, "plugins": [{"name": "recorder"}, {"name": "qa"}]}

    answer = await client.post("/bots", json=body)

    assert answer.status_code == 201, answer.text
    configs = [p["config"] for p in launcher.started[0].worker_config()["plugins"]]
    assert configs == [
        {"directory": str(root / "recordings")},
        {"out": str(root / "qa-report" / "{bot_id}")},
    ]
    assert not root.exists()


async def test_a_root_given_through_a_symlink_is_named_by_its_real_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, launcher: Launcher
) -> None:
    real = tmp_path / "volume"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    monkeypatch.setenv("CALLBOT_FILES_DIR", str(tmp_path / "link"))
    store = Store("sqlite://")
    _, key = create_key(store, "tests")
    app = create_app(launcher, store=store)  # type: ignore[arg-type]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://t",
        headers={"Authorization": f"Bearer {key}"},
    ) as client:
        answer = await post(client, "recorder", {"directory": "calls"})
    assert answer.status_code == 201, answer.text
    [spec] = launcher.started[0].worker_config()["plugins"]
    assert spec["config"] == {"directory": str(real / "calls")}


# ---------------------------------------------------------------- the mechanism


def test_the_files_root_defaults_to_the_data_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CALLBOT_FILES_DIR", raising=False)
    monkeypatch.setenv("CALLBOT_DATA_DIR", str(tmp_path))
    assert ControlPlaneSettings().resolved_files_dir() == tmp_path / "files"
    monkeypatch.setenv("CALLBOT_FILES_DIR", "/srv/media")
    assert ControlPlaneSettings().resolved_files_dir() == Path("/srv/media")


def test_every_bundled_plugin_marks_its_path_fields() -> None:
    marked = {}
    for name in ("echo", "player", "qa", "recorder", "transcoder"):
        schema = load_plugin_class(name).config_model.model_json_schema()
        marked[name] = {
            field: _access(prop)
            for field, prop in schema["properties"].items()
            if _access(prop)
        }
    assert set(available_plugins()) >= set(marked)
    assert marked == {
        "echo": {},
        "player": {"file": "read"},
        "qa": {"out": "write", "thresholds_file": "read"},
        "recorder": {"directory": "write"},
        "transcoder": {"directory": "write"},
    }


def _access(prop: dict[str, Any]) -> str | None:
    if "host_path" in prop:
        return str(prop["host_path"])
    for option in prop.get("anyOf", []):
        if "host_path" in option:
            return str(option["host_path"])
    return None


class Clip(BaseModel):
    path: ReadPath
    note: str = ""


class ThirdPartyConfig(PluginConfig):
    log: Annotated[Path, HostPath("write")] = Path("logs/today.jsonl")
    clips: list[Clip] = Field(default_factory=list)
    extra: list[ReadPath] = Field(default_factory=list)
    backup: WritePath | None = None
    label: str = "not a path"


class ThirdParty(Plugin):
    name = "third-party"
    config_model = ThirdPartyConfig


def test_marks_in_nested_models_lists_and_optionals_are_confined(
    tmp_path: Path,
) -> None:
    root = tmp_path / "files"
    (root / "a").mkdir(parents=True)
    (root / "a" / "one.wav").write_bytes(b"")
    (root / "two.wav").write_bytes(b"")
    spec = PluginSpec(
        name="third-party",
        config={
            "clips": [{"path": "a/one.wav", "note": "a/one.wav"}],
            "extra": ["two.wav"],
            "backup": "old/b.jsonl",
            "label": "/etc",
        },
    )

    [confined] = confine_specs([spec], root, {"third-party": ThirdParty})

    assert confined.config == {
        "clips": [{"path": str(root / "a" / "one.wav"), "note": "a/one.wav"}],
        "extra": [str(root / "two.wav")],
        "backup": str(root / "old" / "b.jsonl"),
        "label": "/etc",
        "log": str(root / "logs" / "today.jsonl"),
    }
    assert not (root / "old").exists() and not (root / "logs").exists()
    assert not (root / "old" / "b.jsonl").exists()


def test_a_nested_escape_names_its_field(tmp_path: Path) -> None:
    spec = PluginSpec(name="third-party", config={"clips": [{"path": "../x.wav"}]})
    with pytest.raises(HostPathError) as caught:
        confine_specs([spec], tmp_path, {"third-party": ThirdParty})
    assert str(caught.value) == (
        f"plugin 'third-party': clips.0.path '../x.wav' is outside the files"
        f" root {tmp_path}"
    )


def test_callbot_run_still_takes_any_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from callbot.cli import plugin_specs

    monkeypatch.setenv("CALLBOT_FILES_DIR", str(tmp_path / "files"))
    outside = tmp_path / "anywhere" / "speech.wav"
    outside.parent.mkdir()
    shutil.copy(SPEECH, outside)

    specs = plugin_specs(
        [
            "run",
            "--room",
            "lobby",
            "--plugin",
            "recorder",
            "--plugin-config",
            "directory=/tmp/recordings-anywhere",
            "--plugin",
            "player",
            "--plugin-config",
            f"file={outside}",
        ]
    )

    assert [(s.name, s.config) for s in specs] == [
        ("recorder", {"directory": "/tmp/recordings-anywhere"}),
        ("player", {"file": str(outside)}),
    ]
    assert not (tmp_path / "files").exists()


async def test_the_apps_own_settings_name_the_root_not_the_environment(
    tmp_path: Path, launcher: Launcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLBOT_FILES_DIR", str(tmp_path / "from-environment"))
    store = Store("sqlite://")
    _, key = create_key(store, "tests")
    settings = ControlPlaneSettings(files_dir=tmp_path / "given-in-code")
    app = create_app(launcher, store=store, settings=settings)  # type: ignore[arg-type]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://t",
        headers={"Authorization": f"Bearer {key}"},
    ) as c:
        answer = await post(c, "recorder", {"directory": "calls"})
    assert answer.status_code == 201, answer.text
    config = launcher.started[0].worker_config()["plugins"][0]["config"]
    assert config["directory"] == str(tmp_path / "given-in-code" / "calls")


@pytest.mark.parametrize("inside", ["", "data"])
def test_a_files_root_holding_the_data_directory_is_refused(
    tmp_path: Path, inside: str
) -> None:
    with pytest.raises(ValueError, match="must not hold the data directory"):
        ControlPlaneSettings(files_dir=tmp_path, data_dir=tmp_path / inside)
    # The default, <data_dir>/files, lies inside the data directory: fine.
    settings = ControlPlaneSettings(data_dir=tmp_path, files_dir=None)
    assert settings.resolved_files_dir() == tmp_path / "files"


async def test_a_player_file_that_is_a_directory_is_named_as_such(
    client: httpx.AsyncClient, root: Path
) -> None:
    (root / "media").mkdir(parents=True)
    message = refused(await post(client, "player", {"file": "media"}))
    assert message.endswith(f"not a regular file: {root.resolve() / 'media'}")
