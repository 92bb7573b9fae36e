"""Events: paged, streamed as SSE, and sent as signed webhooks that are retried."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response

from api.app import create_app
from api.keys import create_key
from api.settings import ControlPlaneSettings
from api.store import Store
from api.webhooks import verify
from tests.api.control_plane import free_port
from tests.api.served import serve
from tests.api.test_launcher import launcher_for, wait_until

pytestmark = pytest.mark.integration

SECRET = "s3cret"
BODY = {"server_url": "ws://127.0.0.1:4000/socket", "room_id": "lobby"}


class Receiver:
    """A webhook receiver that answers 500 to the first ``failures`` tries of each
    event."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.requests: list[dict[str, Any]] = []
        self.app = FastAPI()

        @self.app.post("/hook")
        async def hook(request: Request) -> Response:
            body = await request.body()
            self.requests.append(
                {"headers": dict(request.headers), "body": body, "at": time.time()}
            )
            tries = self.tries(request.headers["callbot-event-id"])
            if len(tries) <= self.failures:
                return Response(status_code=500)
            return Response(status_code=204)

    def tries(self, event_id: str) -> list[dict[str, Any]]:
        return [
            r for r in self.requests if r["headers"]["callbot-event-id"] == event_id
        ]

    def accepted(self) -> list[dict[str, Any]]:
        return [
            tries[self.failures]
            for event_id in {r["headers"]["callbot-event-id"] for r in self.requests}
            if len(tries := self.tries(event_id)) > self.failures
        ]


async def sse_events(
    response: httpx.Response, count: int
) -> AsyncIterator[dict[str, Any]]:
    """Parse ``count`` events off an SSE response."""
    seen = 0
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line.startswith(":"):
            continue
        if line == "":
            if "data" in fields:
                yield {
                    "id": fields.get("id"),
                    "event": fields.get("event"),
                    "data": json.loads(fields["data"]),
                }
                seen += 1
                if seen == count:
                    return
            fields = {}
            continue
        name, _, value = line.partition(": ")
        fields[name] = value


@pytest.fixture
def store() -> Store:
    return Store("sqlite://")


def auth(store: Store) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_key(store, 'tests')[1]}"}


async def test_sse_delivers_status_changes_in_order_and_stops_with_the_client(
    store: Store, tmp_path: Path
) -> None:
    launcher = launcher_for("polite")
    app = create_app(
        launcher, store=store, settings=ControlPlaneSettings(data_dir=tmp_path)
    )
    headers = auth(store)
    async with (
        serve(app) as url,
        httpx.AsyncClient(base_url=url, headers=headers, timeout=10.0) as client,
    ):
        # Every bot's stream, opened before the bot exists.
        async with client.stream("GET", "/events/stream") as everything:
            assert everything.headers["content-type"].startswith("text/event-stream")
            await wait_until(lambda: app.state.bus.subscribers == 1)
            bot_id = (await client.post("/bots", json=BODY)).json()["id"]
            await wait_until(lambda: app.state.bots[bot_id].status == "in_call")
            await client.delete(f"/bots/{bot_id}")
            statuses = [
                e["data"]["data"]["status"]
                async for e in sse_events(everything, 6)
                if e["event"] == "status"
            ]
        assert statuses[:5] == ["starting", "connecting", "in_call", "leaving", "left"]

        # A closed client's stream is gone at once.
        took = await wait_until(lambda: app.state.bus.subscribers == 0, timeout=2.0)
        assert took < 0.5

        # One bot's stream replays from a seq (or Last-Event-ID).
        async with client.stream(
            "GET", f"/bots/{bot_id}/events/stream", headers={"Last-Event-ID": "0"}
        ) as replay:
            replayed = [e async for e in sse_events(replay, 5)]
        assert [
            e["data"]["data"]["status"] for e in replayed if e["event"] == "status"
        ][:3] == ["starting", "connecting", "in_call"]
        assert [int(e["id"]) for e in replayed] == sorted(
            int(e["id"]) for e in replayed
        )

        page = (await client.get(f"/bots/{bot_id}/events", params={"limit": 2})).json()
        assert len(page["events"]) == 2 and page["next_after"] is not None
        rest = (
            await client.get(
                f"/bots/{bot_id}/events", params={"after": page["next_after"]}
            )
        ).json()
        assert rest["next_after"] is None
        all_ids = [e["event_id"] for e in page["events"] + rest["events"]]
        assert len(all_ids) == len(set(all_ids)) >= 6
    await launcher.close()


async def test_webhooks_are_signed_retried_and_match_the_stored_events(
    store: Store, tmp_path: Path
) -> None:
    receiver = Receiver(failures=2)
    launcher = launcher_for("polite")
    settings = ControlPlaneSettings(data_dir=tmp_path, webhook_secret=SECRET)
    async with serve(receiver.app) as hook_base:
        app = create_app(
            launcher, store=store, settings=settings, webhook_base_delay=0.05
        )
        async with (
            serve(app) as url,
            httpx.AsyncClient(
                base_url=url, headers=auth(store), timeout=10.0
            ) as client,
        ):
            created = await client.post(
                "/bots", json={**BODY, "webhook_url": f"{hook_base}/hook"}
            )
            bot_id = created.json()["id"]
            await wait_until(lambda: app.state.bots[bot_id].status == "in_call")
            await client.delete(f"/bots/{bot_id}")
            await wait_until(lambda: app.state.bots[bot_id].exited)

            stored = (await client.get(f"/bots/{bot_id}/events")).json()["events"]
            status_ids = [e["event_id"] for e in stored if e["type"] == "status"]
            await wait_until(
                lambda: (
                    {r["headers"]["callbot-event-id"] for r in receiver.accepted()}
                    >= set(status_ids)
                ),
                timeout=10.0,
            )
            log = (await client.get(f"/bots/{bot_id}/webhooks")).json()["deliveries"]

    # Every event was refused twice, then arrived with the same id and body,
    # the retries 0.05 s and then 0.1 s apart.
    for event_id in status_ids:
        first, second, third = receiver.tries(event_id)
        assert first["body"] == second["body"] == third["body"]
        assert second["at"] - first["at"] >= 0.04
        assert third["at"] - second["at"] >= 0.09

    for request in receiver.requests:
        headers = request["headers"]
        assert verify(
            SECRET,
            headers["callbot-timestamp"],
            request["body"],
            headers["callbot-signature"],
            now=time.time(),
        )
        assert not verify(
            "other",
            headers["callbot-timestamp"],
            request["body"],
            headers["callbot-signature"],
            now=time.time(),
        )
    delivered = {
        json.loads(r["body"])["event_id"]: json.loads(r["body"])
        for r in receiver.accepted()
    }
    for event in stored:
        assert delivered[event["event_id"]] == event
    assert {
        (d["attempts"], d["delivered"]) for d in log if d["event_type"] == "status"
    } == {(3, True)}
    await launcher.close()


async def test_webhooks_not_delivered_before_a_restart_are_delivered_after_it(
    tmp_path: Path,
) -> None:
    database = f"sqlite:///{tmp_path / 'cp.db'}"
    port = free_port()
    settings = ControlPlaneSettings(
        data_dir=tmp_path,
        webhook_secret=SECRET,
        webhook_urls=[f"http://127.0.0.1:{port}/hook"],
    )

    # The receiver is down while the first control plane runs.
    store = Store(database)
    launcher = launcher_for("polite")
    app = create_app(launcher, store=store, settings=settings, webhook_base_delay=0.2)
    async with (
        serve(app) as url,
        httpx.AsyncClient(base_url=url, headers=auth(store), timeout=10.0) as client,
    ):
        bot_id = (await client.post("/bots", json=BODY)).json()["id"]
        await wait_until(lambda: app.state.bots[bot_id].exited is False)
        await client.delete(f"/bots/{bot_id}")
        await wait_until(lambda: app.state.bots[bot_id].exited)
        await wait_until(
            lambda: all(d["attempts"] >= 1 for d in store.deliveries(bot_id))
        )
    store.close()
    await launcher.close()

    receiver = Receiver()
    again = Store(database)
    undelivered = {d["event_id"] for d in again.deliveries(bot_id)}
    assert len(undelivered) >= 3
    app = create_app(
        launcher_for("polite"), store=again, settings=settings, webhook_base_delay=0.2
    )
    async with serve(receiver.app, port), serve(app):
        await wait_until(
            lambda: (
                {r["headers"]["callbot-event-id"] for r in receiver.requests}
                >= undelivered
            ),
            timeout=10.0,
        )
    assert all(d["delivered"] for d in again.deliveries(bot_id))
    again.close()
