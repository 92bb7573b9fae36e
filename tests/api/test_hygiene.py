"""API hygiene: keys, error bodies, request ids, idempotency, allow-lists, limits."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from api.app import create_app
from api.keys import create_key, hash_key
from api.settings import ControlPlaneSettings
from api.store import Store
from api.tables import ApiKeyRow
from tests.api.test_app import FakeLauncher

BODY = {"server_url": "ws://127.0.0.1:4000/socket", "room_id": "lobby"}


class Host:
    def __init__(self, tmp_path: Path) -> None:
        self.store = Store("sqlite://")
        self.key = create_key(self.store, "tests")[1]
        self.launcher = FakeLauncher()
        self.load = 0.1
        self.app = create_app(
            self.launcher,
            store=self.store,
            settings=ControlPlaneSettings(
                data_dir=tmp_path,
                max_bots=2,
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
