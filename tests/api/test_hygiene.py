"""API hygiene: keys, error bodies, request ids, idempotency, allow-lists, limits."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from api.app import create_app
from api.commands import build_app
from api.keys import create_key, hash_key
from api.launcher import LaunchError
from api.settings import ControlPlaneSettings
from api.store import Store
from api.tables import ApiKeyRow, BotRow
from tests.api.test_app import FakeLauncher
from tests.api.test_store import make_0001_database

BODY = {"server_url": "ws://127.0.0.1:4000/socket", "room_id": "lobby"}


class Host:
    def __init__(self, tmp_path: Path, max_bots: int = 2) -> None:
        self.store = Store("sqlite://")
        self.key_id, self.key = create_key(self.store, "tests")
        self.launcher = FakeLauncher()
        self.load = 0.1
        self.app = create_app(
            self.launcher,
            store=self.store,
            settings=ControlPlaneSettings(
                data_dir=tmp_path,
                max_bots=max_bots,
                max_load=0.9,
                server_hosts=["127.0.0.1", "sensocto.example"],
            ),
            load=lambda: self.load,
        )
        self.anonymous = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://cp"
        )
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url="http://cp",
            headers={"Authorization": f"Bearer {self.key}"},
        )

    def client_of_new_key(self, name: str) -> tuple[str, httpx.AsyncClient]:
        key_id, key = create_key(self.store, name)
        return key_id, httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url="http://cp",
            headers={"Authorization": f"Bearer {key}"},
        )


@pytest.fixture
async def host(tmp_path: Path) -> AsyncIterator[Host]:
    h = Host(tmp_path)
    async with h.app.router.lifespan_context(h.app), h.client, h.anonymous:
        yield h
    h.store.close()


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer cb_wrong"}, {"Authorization": "Basic eDp5"}],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/bots"), ("POST", "/bots"), ("GET", "/bots/b-1/events")],
)
async def test_every_bot_route_needs_a_valid_key(
    host: Host, headers: dict[str, str], method: str, path: str
) -> None:
    response = await host.anonymous.request(method, path, headers=headers, json=BODY)

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    error = response.json()["error"]
    assert error["code"] == "unauthorized"
    assert error["retryable"] is False
    assert error["request_id"] == response.headers["x-request-id"]
    assert host.launcher.started == []


async def test_health_and_metrics_need_no_key(host: Host) -> None:
    assert (await host.anonymous.get("/health/live")).status_code == 200
    assert (await host.anonymous.get("/health/ready")).status_code == 200
    metrics = await host.anonymous.get("/metrics")
    assert metrics.status_code == 200
    assert 'callbot_bots{status="in_call"} 0' in metrics.text


async def test_keys_are_stored_only_as_hashes(host: Host) -> None:
    with host.store.engine.connect() as conn:
        hashes = [row.key_hash for row in conn.execute(select(ApiKeyRow))]
    assert hashes == [hash_key(host.key)]
    assert host.key not in hashes[0]


async def test_the_same_idempotency_key_and_body_give_the_same_bot(host: Host) -> None:
    headers = {"Idempotency-Key": "order-1"}
    first = await host.client.post("/bots", json=BODY, headers=headers)
    again = await host.client.post("/bots", json=BODY, headers=headers)
    other = await host.client.post(
        "/bots", json={**BODY, "room_id": "other"}, headers=headers
    )

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert len(host.launcher.started) == 1
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_conflict"


async def test_idempotency_keys_belong_to_the_api_key_that_used_them(
    tmp_path: Path,
) -> None:
    host = Host(tmp_path, max_bots=5)
    a = host.client
    b_id, b = host.client_of_new_key("b")
    c_id, c = host.client_of_new_key("c")
    headers = {"Idempotency-Key": "order-1"}
    async with host.app.router.lifespan_context(host.app), a, b, c:
        first_a = await a.post("/bots", json=BODY, headers=headers)
        first_b = await b.post("/bots", json=BODY, headers=headers)
        again_a = await a.post("/bots", json=BODY, headers=headers)
        again_b = await b.post("/bots", json=BODY, headers=headers)
        # Another body under a key another API key used is no conflict...
        first_c = await c.post(
            "/bots", json={**BODY, "room_id": "other"}, headers=headers
        )
        # ...but under a key this API key used, it is.
        conflict = await b.post(
            "/bots", json={**BODY, "room_id": "other"}, headers=headers
        )
        listed = (await c.get("/bots")).json()["bots"]
    with host.store.engine.connect() as conn:
        owners = dict(conn.execute(select(BotRow.id, BotRow.api_key_id)).all())
    host.store.close()

    ids = [r.json()["id"] for r in (first_a, first_b, first_c)]
    assert [r.status_code for r in (first_a, first_b, first_c)] == [201, 201, 201]
    assert len(set(ids)) == 3
    assert [r.headers.get("idempotent-replayed") for r in (first_b, first_c)] == [
        None,
        None,
    ]
    assert (again_a.status_code, again_a.json()["id"]) == (201, ids[0])
    assert (again_b.status_code, again_b.json()["id"]) == (201, ids[1])
    assert again_b.headers["idempotent-replayed"] == "true"
    assert conflict.status_code == 409
    error = conflict.json()["error"]
    assert (error["code"], error["retryable"]) == ("idempotency_conflict", False)
    assert error["message"] == "this Idempotency-Key was used with another body"
    assert [r.bot_id for r in host.launcher.started] == ids
    # Known limit: no tenancy beyond idempotency; every key lists every bot.
    assert {bot["id"] for bot in listed} == set(ids)
    assert owners == dict(zip(ids, [host.key_id, b_id, c_id], strict=True))


async def test_serve_upgrades_a_database_of_the_previous_release(
    tmp_path: Path, database_url: str
) -> None:
    key = "cb_old-key-of-the-previous-release"
    make_0001_database(
        database_url, key_id="k-old", key_hash=hash_key(key), idempotency_key="order-1"
    )
    auth = {"Authorization": f"Bearer {key}"}

    # What `callbot serve` builds: the store opens and migrates the database.
    served = build_app(
        ControlPlaneSettings(data_dir=tmp_path, database_url=database_url)
    )
    async with (
        served.router.lifespan_context(served),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=served),
            base_url="http://cp",
            headers=auth,
        ) as client,
    ):
        old = await client.get("/bots/b-old")
    assert old.status_code == 200
    assert old.json()["status"] == "left"
    assert [h["status"] for h in old.json()["history"]] == [
        "starting",
        "connecting",
        "in_call",
        "leaving",
        "left",
    ]

    # The old bot belongs to no key: its Idempotency-Key is free for every key.
    store = Store(database_url)
    app = create_app(
        FakeLauncher(), store=store, settings=ControlPlaneSettings(data_dir=tmp_path)
    )
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://cp", headers=auth
        ) as client,
    ):
        new = await client.post(
            "/bots", json=BODY, headers={"Idempotency-Key": "order-1"}
        )
        listed = (await client.get("/bots")).json()["bots"]
    store.close()

    assert new.status_code == 201
    assert new.json()["id"] != "b-old"
    assert [bot["id"] for bot in listed] == ["b-old", new.json()["id"]]


@pytest.mark.parametrize(
    ("field", "url"),
    [
        ("server_url", "ws://10.0.0.1:4000/socket"),
        ("server_url", "wss://evil.example/socket"),
        ("webhook_url", "http://169.254.169.254/hook"),
        ("webhook_url", "https://sensocto.example/hook"),
    ],
)
async def test_hosts_off_the_allow_lists_are_422(
    host: Host, field: str, url: str
) -> None:
    response = await host.client.post("/bots", json={**BODY, field: url})

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "host_not_allowed"
    assert field in response.json()["error"]["message"]
    assert host.launcher.started == []


async def test_other_schemes_are_422_validation(host: Host) -> None:
    for body in (
        {**BODY, "server_url": "http://127.0.0.1:4000/socket"},
        {**BODY, "webhook_url": "ftp://127.0.0.1/hook"},
    ):
        response = await host.client.post("/bots", json=body)
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "validation"


async def test_a_full_or_busy_host_is_503_with_retry_after(host: Host) -> None:
    for _ in range(2):
        assert (await host.client.post("/bots", json=BODY)).status_code == 201
    full = await host.client.post("/bots", json=BODY)
    assert full.status_code == 503
    assert full.headers["retry-after"] == "5"
    assert full.json()["error"]["code"] == "too_many_bots"

    host.launcher.started[0].process_exited(-9, now=1.0)
    host.load = 2.0
    busy = await host.client.post("/bots", json=BODY)
    assert busy.status_code == 503
    assert busy.json()["error"]["code"] == "host_busy"
    assert busy.headers["retry-after"] == "5"
    metrics = (await host.anonymous.get("/metrics")).text
    assert 'callbot_bot_rejections_total{code="too_many_bots"} 1' in metrics


async def test_draining_refuses_bots_and_turns_readiness_off(host: Host) -> None:
    host.app.state.drain()

    refused = await host.client.post("/bots", json=BODY)
    ready = await host.anonymous.get("/health/ready")

    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "draining"
    assert ready.status_code == 503


async def test_a_request_id_is_made_or_kept_and_reaches_the_logs(
    host: Host, caplog: pytest.LogCaptureFixture
) -> None:
    made = await host.client.get("/bots")
    assert len(made.headers["x-request-id"]) == 16

    with caplog.at_level(logging.INFO, logger="api.app"):
        kept = await host.client.post(
            "/bots", json=BODY, headers={"X-Request-ID": "trace-7"}
        )
    assert kept.headers["x-request-id"] == "trace-7"
    starting = [r for r in caplog.records if "starting in room" in r.getMessage()]
    assert [r.request_id for r in starting] == ["trace-7"]  # type: ignore[attr-defined]

    bad = await host.client.get("/bots", headers={"X-Request-ID": "no spaces!"})
    assert bad.headers["x-request-id"] != "no spaces!"


async def test_openapi_declares_bearer_auth_and_the_new_routes(host: Host) -> None:
    spec = (await host.anonymous.get("/openapi.json")).json()

    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for path in (
        "/bots/{bot_id}/events",
        "/bots/{bot_id}/events/stream",
        "/events/stream",
        "/bots/{bot_id}/logs",
        "/bots/{bot_id}/webhooks",
        "/metrics",
    ):
        assert path in spec["paths"]
    post = spec["paths"]["/bots"]["post"]
    assert {"401", "409", "422", "503"} <= set(post["responses"])
    assert "security" not in spec["paths"]["/health/live"]["get"]


async def test_replays_during_a_launch_that_fails_get_its_503_not_a_bot(
    host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = asyncio.Event()
    calls: list[str] = []

    async def start(record: Any) -> None:
        calls.append(record.bot_id)
        await release.wait()
        raise LaunchError("no free callbot_slot in the Ray cluster; add nodes or slots")

    lookups: list[str] = []
    find = host.store.find_idempotent

    def counted(key: str, *, api_key_id: str | None) -> Any:
        lookups.append(key)
        return find(key, api_key_id=api_key_id)

    monkeypatch.setattr(host.launcher, "start", start)
    monkeypatch.setattr(host.store, "find_idempotent", counted)
    headers = {"Idempotency-Key": "k-fails"}
    posts = [
        asyncio.create_task(host.client.post("/bots", json=BODY, headers=headers))
        for _ in range(5)
    ]
    # Every request has looked its key up while the first one is launching.
    while len(lookups) < 5:
        await asyncio.sleep(0.01)
    release.set()
    answers = await asyncio.gather(*posts)
    assert [a.status_code for a in answers] == [503] * 5
    assert {a.json()["error"]["code"] for a in answers} == {"launch_failed"}
    assert {a.json()["error"]["message"] for a in answers} == {
        "no free callbot_slot in the Ray cluster; add nodes or slots"
    }
    assert len(calls) == 1
    assert (await host.client.get("/bots")).json()["bots"] == []


async def test_an_empty_idempotency_key_is_refused(host: Host) -> None:
    answer = await host.client.post("/bots", json=BODY, headers={"Idempotency-Key": ""})
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "validation"
    assert "idempotency-key" in answer.json()["error"]["message"].lower()
