"""Supervision of local bots: heartbeats, crashes and their logs, leave rules, drain."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from api.keys import create_key
from api.launcher import LocalProcessLauncher
from api.record import BotRecord
from api.settings import ControlPlaneSettings
from api.store import Store
from tests.api.control_plane import ServeProcess
from tests.api.test_launcher import FAKE_WORKER, make_record, wait_until
from tests.api.test_restart import bots, wait_for

pytestmark = pytest.mark.integration

BODY = {"server_url": "ws://127.0.0.1:4000/socket", "room_id": "lobby"}


def launcher(mode: str, **kw: float) -> LocalProcessLauncher:
    return LocalProcessLauncher(command=[sys.executable, FAKE_WORKER, mode], **kw)


async def test_a_silent_bot_fails_with_heartbeat_lost_and_is_killed() -> None:
    local = launcher("hang", heartbeat_timeout=0.6)
    record = make_record()
    await local.start(record)
    await wait_until(lambda: record.status == "in_call")

    took = await wait_until(lambda: record.exited, timeout=5.0)

    assert 0.4 < took < 2.0
    assert record.error is not None
    assert record.error.code == "heartbeat_lost"
    assert record.exit_code == -signal.SIGKILL
    await local.close()


async def test_a_crash_keeps_the_exit_code_and_the_last_log_lines() -> None:
    local = launcher("crash")
    record = make_record()
    await local.start(record)
    await wait_until(lambda: record.exited)

    assert record.error is not None
    assert (record.error.code, record.exit_code) == ("worker_exited", 3)
    assert record.log_tail[-1] == "fake worker: the media pipeline broke"
    assert local.logs(record, 5)[-1] == "fake worker: the media pipeline broke"
    await local.close()


async def test_a_killed_keeper_fails_the_bot_and_takes_the_worker_with_it() -> None:
    local = launcher("polite")
    record = make_record()
    await local.start(record)
    await wait_until(lambda: record.status == "in_call")
    assert record.keeper_pid is not None and record.pid is not None

    os.kill(record.keeper_pid, signal.SIGKILL)
    await wait_until(lambda: record.status == "failed", timeout=5.0)

    assert record.error is not None
    assert record.error.code == "keeper_lost"
    await local.close()


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Store]]:
    store = Store("sqlite://")
    key = create_key(store, "tests")[1]
    app = create_app(
        launcher("polite"),
        store=store,
        settings=ControlPlaneSettings(data_dir=tmp_path),
    )
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://cp",
            headers={"Authorization": f"Bearer {key}"},
        ) as client,
    ):
        client.app = app  # type: ignore[attr-defined]
        yield client, store
    store.close()


async def test_nobody_joined_and_max_duration_make_bots_leave(
    api: tuple[httpx.AsyncClient, Store],
) -> None:
    client, _ = api
    records: dict[str, BotRecord] = client.app.state.bots  # type: ignore[attr-defined]
    lonely = (
        await client.post("/bots", json={**BODY, "nobody_joined_timeout": 0.5})
    ).json()["id"]
    short = (await client.post("/bots", json={**BODY, "max_duration": 1.0})).json()[
        "id"
    ]

    await wait_until(lambda: records[lonely].exited and records[short].exited, 8.0)

    for bot_id, reason in ((lonely, "nobody_joined"), (short, "max_duration")):
        body = (await client.get(f"/bots/{bot_id}")).json()
        assert body["status"] == "left"
        leaving = [h for h in body["history"] if h["status"] == "leaving"]
        assert [h["message"] for h in leaving] == [reason]
    metrics = (await client.get("/metrics")).text
    assert "callbot_time_to_in_call_seconds_count 2" in metrics
    assert 'callbot_bots{status="left"} 2' in metrics


async def test_logs_route_serves_the_workers_last_lines(
    api: tuple[httpx.AsyncClient, Store],
) -> None:
    client, _ = api
    bot_id = (await client.post("/bots", json=BODY)).json()["id"]
    records = client.app.state.bots  # type: ignore[attr-defined]
    await wait_until(lambda: records[bot_id].status == "in_call")
    log = Path(records[bot_id].state_dir) / "worker.log"
    log.write_text("".join(f"line {i}\n" for i in range(10)))

    body = (await client.get(f"/bots/{bot_id}/logs", params={"lines": 3})).json()

    assert body == {"bot_id": bot_id, "lines": ["line 7", "line 8", "line 9"]}


def test_sigterm_drains_every_bot_and_exits(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    serve = ServeProcess(data, CALLBOT_DRAIN_TIMEOUT="10")
    try:
        serve.wait_live()
        serve.create_key()
        ids = [serve.request("POST", "/bots", json=BODY).json()["id"] for _ in range(2)]
        wait_for(lambda: all(b["status"] == "in_call" for b in bots(serve).values()))
        pids = [b["pid"] for b in bots(serve).values()]

        start = time.monotonic()
        code = serve.stop(timeout=20)
        took = time.monotonic() - start
    finally:
        if serve.process.poll() is None:
            serve.kill()

    # Uvicorn ends by raising the signal it caught again, after the drain.
    assert code in (0, -signal.SIGTERM)
    assert took < 10
    store = Store(f"sqlite:///{data / 'callbot.db'}")
    statuses = {r.bot_id: (r.status, r.exit_code) for r in store.load_bots()}
    store.close()
    assert statuses == {bot_id: ("left", 0) for bot_id in ids}
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_sigterm_with_keep_leaves_bots_for_the_next_control_plane(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    first = ServeProcess(data, CALLBOT_KEEP_BOTS_ON_SHUTDOWN="true")
    second: ServeProcess | None = None
    try:
        first.wait_live()
        key = first.create_key()
        bot_id = first.request("POST", "/bots", json=BODY).json()["id"]
        wait_for(lambda: bots(first)[bot_id]["status"] == "in_call")
        assert first.stop(timeout=20) in (0, -signal.SIGTERM)

        second = ServeProcess(data)
        second.headers["Authorization"] = f"Bearer {key}"
        second.wait_live()
        assert bots(second)[bot_id]["status"] == "in_call"
        second.request("DELETE", f"/bots/{bot_id}")
        wait_for(lambda: bots(second)[bot_id]["status"] == "left")
    finally:
        if first.process.poll() is None:
            first.kill()
        if second is not None:
            second.stop()


async def test_kill_9_of_a_bot_fails_it_and_the_api_keeps_serving(
    api: tuple[httpx.AsyncClient, Store],
) -> None:
    client, store = api
    records = client.app.state.bots  # type: ignore[attr-defined]
    victim, other = [
        (await client.post("/bots", json=BODY)).json()["id"] for _ in range(2)
    ]
    await wait_until(
        lambda: records[victim].status == records[other].status == "in_call"
    )

    os.kill(records[victim].pid, signal.SIGKILL)
    took = await wait_until(lambda: records[victim].status == "failed", timeout=5.0)

    body = (await client.get(f"/bots/{victim}")).json()
    assert took < 1.0
    assert body["error"] == {
        "code": "worker_killed",
        "message": "worker killed by SIGKILL (exit code -9)",
    }
    assert (await client.get(f"/bots/{other}")).json()["status"] == "in_call"
    assert (await client.post("/bots", json=BODY)).status_code == 201
    [failed] = [r for r in store.load_bots() if r.bot_id == victim]
    assert failed.error_code == "worker_killed"


async def test_attention_set_through_the_api_reaches_the_running_worker(
    api: tuple[httpx.AsyncClient, Store],
) -> None:
    client, _ = api
    records: dict[str, BotRecord] = client.app.state.bots  # type: ignore[attr-defined]
    bot_id = (await client.post("/bots", json={**BODY, "attention": "medium"})).json()[
        "id"
    ]
    await wait_until(lambda: records[bot_id].attention == "medium")

    changed = await client.post(f"/bots/{bot_id}/attention", json={"level": "low"})
    assert changed.status_code == 202
    # The worker's own report confirms the level, not just the control plane.
    records[bot_id].attention = None
    await wait_until(lambda: records[bot_id].attention == "low")

    view = (await client.get(f"/bots/{bot_id}")).json()
    assert (view["attention"], view["tier"]) == ("low", "viewer")
    assert view["snapshots_received"]["bot-2"] >= 0
    await client.delete(f"/bots/{bot_id}")
    await wait_until(lambda: records[bot_id].exited)
    ended = await client.post(f"/bots/{bot_id}/attention", json={"level": "high"})
    assert ended.status_code == 409
    assert ended.json()["error"]["code"] == "bot_ended"
