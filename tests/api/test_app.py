"""The REST routes, with a launcher double instead of worker processes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.keys import create_key
from api.launcher import Launcher, LaunchError
from api.record import BotRecord
from api.store import Store

SERVER_URL = "ws://127.0.0.1:4000/socket"


class FakeLauncher(Launcher):
    """Records what the app asks for; the test plays the worker's reports."""

    def __init__(self) -> None:
        self.started: list[BotRecord] = []
        self.left: list[str] = []
        self.closed = False
        self.is_ready = True
        self.fail_start: str | None = None
        self.attention: list[tuple[str, str]] = []

    @property
    def ready(self) -> bool:
        return self.is_ready

    async def start(self, record: BotRecord) -> None:
        if self.fail_start is not None:
            raise LaunchError(self.fail_start)
        self.started.append(record)

    async def leave(self, record: BotRecord) -> None:
        record.request_leave(now=0.0)
        self.left.append(record.bot_id)

    async def set_attention(self, record: BotRecord, level: str) -> bool:
        self.attention.append((record.bot_id, level))
        return True

    async def close(self) -> None:
        self.closed = True


@pytest.fixture
def launcher() -> FakeLauncher:
    return FakeLauncher()


@pytest.fixture
def store() -> Iterator[Store]:
    s = Store("sqlite://")
    yield s
    s.close()


@pytest.fixture
async def client(
    launcher: FakeLauncher, store: Store
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(launcher, store=store, max_bots=3)
    _, key = create_key(store, "tests")
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=transport,
            base_url="http://cp",
            headers={"Authorization": f"Bearer {key}"},
        ) as c,
    ):
        yield c


async def create(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await client.post(
        "/bots", json={"server_url": SERVER_URL, "room_id": "lobby", **body}
    )


async def test_post_starts_a_bot_and_answers_201_with_its_id(
    client: httpx.AsyncClient, launcher: FakeLauncher
) -> None:
    response = await create(client, user_id="bot-1", display_name="Bot 1")

    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "starting"
    assert response.headers["location"] == f"/bots/{body['id']}"
    [record] = launcher.started
    assert record.bot_id == body["id"]
    assert record.worker_config() == {
        "bot_id": body["id"],
        "server_url": SERVER_URL,
        "room_id": "lobby",
        "user_id": "bot-1",
        "display_name": "Bot 1",
    }


async def test_the_control_planes_ice_addresses_reach_the_worker(
    launcher: FakeLauncher,
) -> None:
    store = Store("sqlite://")
    app = create_app(launcher, store=store, ice_addresses=["10.1.2.3"])
    _, key = create_key(store, "tests")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://cp",
        headers={"Authorization": f"Bearer {key}"},
    ) as c:
        assert (await create(c, user_id="bot-1")).status_code == 201

    [record] = launcher.started
    assert record.worker_config()["ice_addresses"] == ["10.1.2.3"]


async def test_a_missing_user_id_is_generated(
    client: httpx.AsyncClient, launcher: FakeLauncher
) -> None:
    first = await create(client)
    second = await create(client)

    users = [r.user_id for r in launcher.started]
    assert first.status_code == second.status_code == 201
    assert all(u.startswith("bot-") for u in users)
    assert users[0] != users[1]


async def test_get_shows_what_the_reports_said(
    client: httpx.AsyncClient, launcher: FakeLauncher
) -> None:
    bot_id = (await create(client, user_id="bot-1")).json()["id"]
    [record] = launcher.started
    record.feed_line(b'{"type": "status", "status": "connecting"}', now=0.5)
    record.feed_line(b'{"type": "status", "status": "in_call"}', now=1.0)
    record.feed_line(b'{"type": "joined", "endpoint_id": "bot-1_12"}', now=1.0)
    record.feed_line(
        b'{"type": "stats", "participants": ["bot-2"], "tracks": ['
        b'{"direction": "inbound", "kind": "video", "track_id": "t1",'
        b' "from_user_id": "bot-2", "frames": 31, "packets": 90, "bytes": 9000,'
        b' "width": 640, "height": 480}]}',
        now=2.0,
    )

    body = (await client.get(f"/bots/{bot_id}")).json()

    assert body["status"] == "in_call"
    assert body["endpoint_id"] == "bot-1_12"
    assert body["participants"] == ["bot-2"]
    [track] = body["tracks"]
    assert (track["frames"], track["width"], track["height"]) == (31, 640, 480)
    listed = (await client.get("/bots")).json()["bots"]
    assert [b["id"] for b in listed] == [bot_id]


async def test_delete_asks_the_bot_to_leave_and_answers_202(
    client: httpx.AsyncClient, launcher: FakeLauncher
) -> None:
    bot_id = (await create(client)).json()["id"]
    [record] = launcher.started
    record.feed_line(b'{"type": "status", "status": "connecting"}', now=0.5)
    record.feed_line(b'{"type": "status", "status": "in_call"}', now=1.0)

    response = await client.delete(f"/bots/{bot_id}")

    assert response.status_code == 202
    assert response.json()["status"] == "leaving"
    assert launcher.left == [bot_id]

    assert response.json()["reason"] == "left on request"

    record.feed_line(b'{"type": "status", "status": "left"}', now=2.0)
    record.process_exited(0, now=2.1)
    view = (await client.get(f"/bots/{bot_id}")).json()
    assert (view["status"], view["reason"]) == ("left", "left on request")
    assert view["history"][-1]["message"] == "left on request"

    again = await client.delete(f"/bots/{bot_id}")
    assert again.status_code == 202
    assert again.json()["status"] == "left"
    assert launcher.left == [bot_id]


@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_an_unknown_bot_is_404_bot_not_found(
    client: httpx.AsyncClient, method: str
) -> None:
    response = await client.request(
        method, "/bots/b-nope", headers={"X-Request-ID": "req-42"}
    )

    assert response.status_code == 404
    assert response.headers["x-request-id"] == "req-42"
    assert response.json() == {
        "error": {
            "code": "bot_not_found",
            "message": "no bot with id b-nope",
            "retryable": False,
            "request_id": "req-42",
        }
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"server_url": "http://127.0.0.1:4000/socket", "room_id": "x"}, "server_url"),
        ({"server_url": "ws:///socket", "room_id": "x"}, "server_url"),
        ({"server_url": "lobby", "room_id": "x"}, "server_url"),
        ({"server_url": "ws://127.0.0.1:99999/socket", "room_id": "x"}, "port"),
        ({"server_url": "ws://127.0.0.1:0/socket", "room_id": "x"}, "port"),
        ({"server_url": "ws://127.0.0.1:ws/socket", "room_id": "x"}, "port"),
        (
            {"server_url": "ws://alice:secret@127.0.0.1:4000/socket", "room_id": "x"},
            "user name or password",
        ),
        (
            {
                "server_url": SERVER_URL,
                "room_id": "x",
                "webhook_url": "http://127.0.0.1:70000/hook",
            },
            "webhook_url",
        ),
        ({"server_url": SERVER_URL}, "room_id"),
        ({"server_url": SERVER_URL, "room_id": ""}, "room_id"),
        ({"server_url": SERVER_URL, "room_id": "x", "colour": "red"}, "colour"),
        ({"server_url": SERVER_URL, "room_id": "x", "user_id": 7}, "user_id"),
    ],
)
async def test_invalid_bodies_are_422_validation_naming_the_field(
    client: httpx.AsyncClient,
    launcher: FakeLauncher,
    body: dict[str, Any],
    field: str,
) -> None:
    response = await client.post("/bots", json=body)

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation"
    assert error["retryable"] is False
    assert field in error["message"]
    assert set(response.json()) == {"error"}
    assert launcher.started == []


@pytest.mark.parametrize(
    "content",
    [
        b"{nope",
        b'{"server_url": "ws://127.0.0.1:4000/socket", "room_id": "x",'
        b' "max_duration": NaN}',
        b'{"server_url": "ws://127.0.0.1:4000/socket", "room_id": "x",'
        b' "alone_timeout": Infinity}',
        b'{"server_url": "ws://127.0.0.1:4000/socket", "room_id": "\xff"}',
    ],
)
async def test_a_body_that_is_not_json_is_400_invalid_json(
    client: httpx.AsyncClient, launcher: FakeLauncher, content: bytes
) -> None:
    response = await client.post(
        "/bots",
        content=content,
        headers={"content-type": "application/json", "X-Request-ID": "req-7"},
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["request_id"]) == ("invalid_json", "req-7")
    assert launcher.started == []


async def test_a_body_over_the_limit_is_413_before_it_is_read_whole(
    client: httpx.AsyncClient, launcher: FakeLauncher
) -> None:
    padding = "x" * (1 << 20)
    declared = await create(client, display_name=padding)

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"server_url": "ws://127.0.0.1:4000/socket", "room_id": "'
        for _ in range(20):
            yield b"y" * 65536
        yield b'"}'

    streamed = await client.post(
        "/bots", content=chunks(), headers={"content-type": "application/json"}
    )

    for response in (declared, streamed):
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "body_too_large"
    assert launcher.started == []


async def test_errors_never_echo_a_huge_value_whole(
    client: httpx.AsyncClient,
) -> None:
    huge = "b-" + "7" * 5000

    missing = await client.get(f"/bots/{huge}")
    extra = await client.post(
        "/bots", json={"server_url": SERVER_URL, "room_id": "x", "k" * 5000: 1}
    )

    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == f"no bot with id {huge[:64]}..."
    assert extra.status_code == 422
    assert len(extra.json()["error"]["message"]) < 300


async def test_unknown_routes_and_methods_use_the_error_body(
    client: httpx.AsyncClient,
) -> None:
    missing = await client.get("/nowhere")
    wrong = await client.put("/bots")

    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "method_not_allowed"


async def test_a_launch_failure_is_503_retryable_and_registers_nothing(
    client: httpx.AsyncClient, launcher: FakeLauncher
) -> None:
    launcher.fail_start = "cannot start the bot worker: no such file"

    response = await create(client)

    assert response.status_code == 503
    error = response.json()["error"]
    assert error == {
        "code": "launch_failed",
        "message": "cannot start the bot worker: no such file",
        "retryable": True,
        "request_id": response.headers["x-request-id"],
    }
    assert response.headers["retry-after"] == "5"
    assert (await client.get("/bots")).json()["bots"] == []


async def test_more_running_bots_than_the_limit_is_503_too_many_bots(
    client: httpx.AsyncClient, launcher: FakeLauncher
) -> None:
    for _ in range(3):
        assert (await create(client)).status_code == 201

    refused = await create(client)
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "too_many_bots"
    assert refused.json()["error"]["retryable"] is True

    # A bot that is gone frees its place.
    launcher.started[0].process_exited(-9, now=5.0)
    assert (await create(client)).status_code == 201


async def test_health_probes(client: httpx.AsyncClient, launcher: FakeLauncher) -> None:
    live = await client.get("/health/live")
    ready = await client.get("/health/ready")
    assert (live.status_code, live.json()) == (200, {"status": "live"})
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})

    launcher.is_ready = False
    not_ready = await client.get("/health/ready")
    assert not_ready.status_code == 503
    assert not_ready.json()["error"]["code"] == "not_ready"
    assert (await client.get("/health/live")).status_code == 200
    assert (await create(client)).status_code == 503


async def test_openapi_documents_examples_and_the_error_body(
    client: httpx.AsyncClient,
) -> None:
    spec = (await client.get("/openapi.json")).json()

    schemas = spec["components"]["schemas"]
    assert schemas["CreateBot"]["examples"][0]["server_url"].startswith("ws://")
    assert schemas["Bot"]["examples"][0]["status"] == "in_call"
    assert schemas["ErrorBody"]["examples"][0]["error"]["code"] == "bot_not_found"
    post = spec["paths"]["/bots"]["post"]
    for status in ("422", "503"):
        ref = post["responses"][status]["content"]["application/json"]["schema"]
        assert ref == {"$ref": "#/components/schemas/ErrorBody"}
    get = spec["paths"]["/bots/{bot_id}"]["get"]
    assert "404" in get["responses"]
    assert "HTTPValidationError" not in schemas


async def test_shutting_down_closes_the_launcher(launcher: FakeLauncher) -> None:
    app = create_app(launcher)

    async with app.router.lifespan_context(app):
        assert not launcher.closed
    assert launcher.closed


def sse_statuses(text: str) -> list[str]:
    """The statuses of the status events in an SSE body, in order."""
    statuses = []
    for block in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if ": " in line
        )
        if fields.get("event") == "status":
            statuses.append(json.loads(fields["data"])["data"]["status"])
    return statuses


def play(launcher: FakeLauncher, record: BotRecord, *statuses: str) -> None:
    for status in statuses:
        record.feed_line(b'{"type": "status", "status": "%s"}' % status.encode(), 1.0)
    launcher._changed(record)


async def test_a_bots_event_stream_ends_after_its_final_status(
    client: httpx.AsyncClient, launcher: FakeLauncher
) -> None:
    bot_id = (await create(client)).json()["id"]
    [record] = launcher.started
    app_bus = client._transport.app.state.bus  # type: ignore[attr-defined]

    live = asyncio.create_task(client.get(f"/bots/{bot_id}/events/stream"))
    async with asyncio.timeout(5):
        while app_bus.subscribers == 0:
            await asyncio.sleep(0.01)
    play(launcher, record, "connecting", "in_call")
    play(launcher, record, "leaving", "left")
    async with asyncio.timeout(5):
        ended = await live

    async with asyncio.timeout(5):
        replayed = await client.get(
            f"/bots/{bot_id}/events/stream", params={"after": 0}
        )
        late = await client.get(f"/bots/{bot_id}/events/stream")

    assert sse_statuses(ended.text) == ["connecting", "in_call", "leaving", "left"]
    assert sse_statuses(replayed.text) == [
        "starting",
        "connecting",
        "in_call",
        "leaving",
        "left",
    ]
    assert sse_statuses(late.text) == []
    assert late.status_code == 200


async def test_adaptive_settings_and_sensors_reach_the_worker_config(
    client: httpx.AsyncClient, launcher: FakeLauncher
) -> None:
    sensors = {
        "source": {"kind": "viewer", "viewer_token": "vt-1", "sensor_ids": ["hr-1"]},
        "server_url": "ws://127.0.0.1:4001/socket",
    }
    response = await create(
        client,
        attention="low",
        tier_profile="server",
        allow_quality_tier_requests=True,
        snapshots=False,
        sensors=sensors,
    )

    assert response.status_code == 201
    config = launcher.started[0].worker_config()
    assert (
        config["attention"],
        config["tier_profile"],
        config["allow_quality_tier_requests"],
        config["snapshots"],
    ) == ("low", "server", True, False)
    assert config["sensors"] == sensors


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"attention": "sleepy"}, "attention"),
        ({"tier_profile": "phone"}, "tier_profile"),
        ({"sensors": {"source": {"kind": "viewer"}}}, "viewer_token"),
        (
            {
                "sensors": {
                    "source": {"kind": "local"},
                    "server_url": "ws://10.0.0.1:4000/socket",
                }
            },
            "sensors.server_url: host is not on the allow-list",
        ),
        (
            {
                "sensors": {
                    "source": {"kind": "local", "replay_path": "/etc/shadow"},
                }
            },
            "replay_path is not accepted over the API",
        ),
    ],
)
async def test_bad_adaptive_settings_are_422(
    client: httpx.AsyncClient,
    launcher: FakeLauncher,
    body: dict[str, Any],
    message: str,
) -> None:
    response = await create(client, **body)

    assert response.status_code == 422
    assert message in response.json()["error"]["message"]
    assert launcher.started == []


async def test_the_bot_view_shows_the_reported_tier_and_snapshots(
    client: httpx.AsyncClient, launcher: FakeLauncher
) -> None:
    bot_id = (await create(client)).json()["id"]
    [record] = launcher.started
    record.feed_line(
        b'{"type": "stats", "tier": "viewer", "speaking": false,'
        b' "attention": "low", "snapshots_sent": 4,'
        b' "snapshots_received": {"bot-2": 7}, "tracks": []}',
        now=2.0,
    )

    view = (await client.get(f"/bots/{bot_id}")).json()

    assert {
        k: view[k]
        for k in (
            "tier",
            "speaking",
            "attention",
            "snapshots_sent",
            "snapshots_received",
        )
    } == {
        "tier": "viewer",
        "speaking": False,
        "attention": "low",
        "snapshots_sent": 4,
        "snapshots_received": {"bot-2": 7},
    }


async def test_attention_is_handed_to_a_running_bot_and_refused_once_it_ended(
    client: httpx.AsyncClient, launcher: FakeLauncher
) -> None:
    bot_id = (await create(client)).json()["id"]
    [record] = launcher.started

    changed = await client.post(f"/bots/{bot_id}/attention", json={"level": "low"})
    bad = await client.post(f"/bots/{bot_id}/attention", json={"level": "max"})
    play(launcher, record, "connecting", "failed")
    ended = await client.post(f"/bots/{bot_id}/attention", json={"level": "high"})

    assert changed.status_code == 202
    assert changed.json()["attention"] == "low"
    assert launcher.attention == [(bot_id, "low")]
    assert bad.status_code == 422
    assert ended.status_code == 409
    error = ended.json()["error"]
    assert (error["code"], error["message"], error["retryable"]) == (
        "bot_ended",
        f"bot {bot_id} has failed; its attention can no longer be changed",
        False,
    )


async def test_attention_is_refused_in_words_once_the_bot_left_or_is_leaving(
    client: httpx.AsyncClient, launcher: FakeLauncher
) -> None:
    bot_id = (await create(client)).json()["id"]
    [record] = launcher.started
    play(launcher, record, "connecting", "in_call")

    await client.delete(f"/bots/{bot_id}")
    leaving = await client.post(f"/bots/{bot_id}/attention", json={"level": "low"})
    play(launcher, record, "left")
    left = await client.post(f"/bots/{bot_id}/attention", json={"level": "low"})

    assert leaving.status_code == left.status_code == 409
    assert leaving.json()["error"]["message"] == (
        f"bot {bot_id} is leaving; its attention can no longer be changed"
    )
    assert left.json()["error"]["message"] == (
        f"bot {bot_id} has left; its attention can no longer be changed"
    )


async def test_a_failure_without_a_reason_still_says_why_in_the_view(
    client: httpx.AsyncClient, launcher: FakeLauncher
) -> None:
    bot_id = (await create(client)).json()["id"]
    [record] = launcher.started
    play(launcher, record, "connecting", "failed")
    reported = (await client.get(f"/bots/{bot_id}")).json()
    record.process_exited(1, now=3.0)
    exited = (await client.get(f"/bots/{bot_id}")).json()

    assert reported["reason"] == "the bot reported a failure without a reason"
    assert reported["error"]["message"] == reported["reason"]
    assert exited["reason"] == "worker exited with code 1"


async def test_the_speech_clip_is_published_once_from_the_package(
    client: httpx.AsyncClient, launcher: FakeLauncher
) -> None:
    response = await create(client, audio_clip="speech")
    refused = await create(client, audio_clip="/etc/passwd")

    assert response.status_code == 201
    config = launcher.started[0].worker_config()
    assert Path(config["audio_file"]).name == "speech.wav"
    assert Path(config["audio_file"]).is_file()
    assert config["audio_file_loop"] is False
    assert refused.status_code == 422
