"""The Ray launcher's rules on stand-in actor handles: no cluster, fast.

The real cluster is exercised by tests/api/test_ray_launcher.py; here the
actor handles are doubles whose methods answer like a BotActor would, so
that each rule (reports, exit, heartbeat loss, leave deadline, actor death,
a vanished actor) is checked on its own.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import ray
import ray.exceptions

from api import lifecycle
from api.ray_launcher import RayLauncher
from api.record import BotRecord


def make_record(bot_id: str = "b-1") -> BotRecord:
    record = BotRecord(
        bot_id,
        server_url="ws://127.0.0.1:9/socket",
        room_id="lobby",
        user_id=f"user-{bot_id}",
        display_name=None,
        now=time.time(),
    )
    return record


def line(**fields: Any) -> str:
    return json.dumps(fields)


class Method:
    def __init__(self, answer: Callable[..., Any]) -> None:
        self._answer = answer
        self.calls: list[tuple[Any, ...]] = []

    def remote(self, *args: Any) -> asyncio.Future[Any]:
        """Runs at once, like an actor task; the result is awaited or not."""
        self.calls.append(args)
        result: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        try:
            result.set_result(self._answer(*args))
        except Exception as exc:
            result.set_exception(exc)
        return result


class FakeActor:
    """Answers like a BotActor: reports by offset, leave, logs, where."""

    def __init__(self, *, obeys_leave: bool = True) -> None:
        self.lines = [
            line(type="status", status="connecting", reason=None),
            line(type="joined", endpoint_id="user-b-1_1"),
            line(type="status", status="in_call", reason=None),
        ]
        self.returncode: int | None = None
        self.silent = False
        self.died: BaseException | None = None
        self.obeys_leave = obeys_leave
        self.log_lines = ["actor log 1", "actor log 2"]
        self.poll = Method(self._poll)
        self.leave = Method(self._leave)
        self.logs = Method(lambda n: ["log line"][-n:])
        self.attention = Method(lambda level: True)
        self.where = Method(lambda: {"pid": 4321, "host": "node-1", "node_id": "n1"})

    def _poll(self, offset: int, log_offset: int) -> dict[str, Any]:
        if self.died is not None:
            raise self.died
        if not self.silent:
            self.lines.append(line(type="stats", participants=["user-b-2"]))
        return {
            "lines": self.lines[offset:],
            "offset": len(self.lines),
            "skipped": 0,
            "returncode": self.returncode,
            "log": self.log_lines[log_offset:],
            "log_offset": len(self.log_lines),
        }

    def _leave(self) -> bool:
        if self.obeys_leave:
            self.lines.append(line(type="status", status="leaving", reason=None))
            self.lines.append(line(type="status", status="left", reason=None))
            self.returncode = 0
        return True


@pytest.fixture
def killed(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    calls: list[Any] = []
    monkeypatch.setattr(
        ray, "kill", lambda handle, no_restart=True: calls.append(handle)
    )
    return calls


async def attach(
    monkeypatch: pytest.MonkeyPatch, actors: dict[str, FakeActor], **options: Any
) -> RayLauncher:
    """A joined launcher that finds ``actors`` by name, as after a restart."""

    def get_actor(name: str, namespace: str | None = None) -> FakeActor:
        if name not in actors:
            raise ValueError(f"Failed to look up actor with name '{name}'")
        return actors[name]

    monkeypatch.setattr(ray, "get_actor", get_actor)
    launcher = RayLauncher("127.0.0.1:1", poll_interval=0.01, **options)

    async def join() -> None:
        launcher._connected = True

    monkeypatch.setattr(launcher, "_join", join)
    await launcher.open()
    await wait_until(lambda: launcher.ready)
    return launcher


async def wait_until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_reports_follow_and_a_leave_ends_in_left_and_a_kill(
    monkeypatch: pytest.MonkeyPatch, killed: list[Any]
) -> None:
    actor = FakeActor()
    launcher = await attach(monkeypatch, {"b-1": actor})
    record = make_record()
    await launcher.reattach(record)
    assert (record.pid, record.node) == (4321, "n1")
    assert record.state_dir == "ray://callbot/b-1"
    await wait_until(lambda: record.status == "in_call")
    assert record.endpoint_id == "user-b-1_1"
    actor.log_lines.append("actor log 3")
    await launcher.leave(record)
    await wait_until(lambda: record.status == "left")
    assert record.exit_code == 0
    await wait_until(lambda: killed == [actor])
    assert launcher.running == 0
    assert record.log_tail == ["actor log 1", "actor log 2", "actor log 3"]


async def test_a_silent_actor_is_failed_heartbeat_lost_and_killed(
    monkeypatch: pytest.MonkeyPatch, killed: list[Any]
) -> None:
    actor = FakeActor()
    launcher = await attach(monkeypatch, {"b-1": actor}, heartbeat_timeout=0.3)
    record = make_record()
    await launcher.reattach(record)
    await wait_until(lambda: record.status == "in_call")
    actor.silent = True
    await wait_until(lambda: record.status == "failed")
    assert record.error is not None
    assert record.error.code == lifecycle.HEARTBEAT_LOST
    assert record.error.message == "no report from the bot for 0.3 s"
    assert killed == [actor]
    assert record.log_tail == ["log line"]


async def test_a_bot_that_does_not_leave_in_time_is_killed(
    monkeypatch: pytest.MonkeyPatch, killed: list[Any]
) -> None:
    actor = FakeActor(obeys_leave=False)
    launcher = await attach(monkeypatch, {"b-1": actor}, leave_timeout=0.3)
    record = make_record()
    await launcher.reattach(record)
    await wait_until(lambda: record.status == "in_call")
    await launcher.leave(record)
    assert actor.leave.calls == [()]
    await wait_until(lambda: record.status == "failed")
    assert record.error is not None
    assert record.error.code == lifecycle.LEAVE_TIMEOUT
    assert "did not leave within 0.3 s" in record.error.message
    assert killed == [actor]


async def test_an_actor_that_dies_fails_the_bot_with_rays_reason(
    monkeypatch: pytest.MonkeyPatch, killed: list[Any]
) -> None:
    actor = FakeActor()
    launcher = await attach(monkeypatch, {"b-1": actor})
    record = make_record()
    await launcher.reattach(record)
    await wait_until(lambda: record.status == "in_call")
    actor.died = ray.exceptions.ActorDiedError()
    await wait_until(lambda: record.status == "failed")
    assert record.error is not None
    assert record.error.code == lifecycle.ACTOR_DIED
    assert record.error.message == (
        "the bot's Ray actor died: The actor died unexpectedly before finishing"
        " this task."
    )
    assert launcher.running == 0
    # The lines the actor logged while it lived stay with the bot.
    assert record.log_tail == ["actor log 1", "actor log 2"]


async def test_a_bot_whose_actor_is_gone_is_not_reattached(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    launcher = await attach(monkeypatch, {})
    record = make_record("b-gone")
    await launcher.reattach(record)
    assert record.status == "failed"
    assert record.error is not None
    assert record.error.code == lifecycle.NOT_REATTACHED
    assert record.error.message.startswith("the bot's Ray actor is gone: ")
    assert "b-gone" in record.error.message


async def test_a_crashed_bot_keeps_its_actors_logs(
    monkeypatch: pytest.MonkeyPatch, killed: list[Any]
) -> None:
    actor = FakeActor()
    launcher = await attach(monkeypatch, {"b-1": actor})
    record = make_record()
    await launcher.reattach(record)
    await wait_until(lambda: record.status == "in_call")
    actor.lines.append(line(type="status", status="failed", reason="call_full"))
    actor.returncode = 1
    await wait_until(lambda: record.exit_code == 1)
    assert record.status == "failed"
    assert record.error is not None
    assert record.error.code == "call_full"
    assert record.log_tail == ["actor log 1", "actor log 2"]
    assert await launcher.read_logs(record, 10) == ["actor log 1", "actor log 2"]
    assert killed == [actor]


async def test_bots_of_an_earlier_control_plane_wait_for_the_join(
    monkeypatch: pytest.MonkeyPatch, killed: list[Any]
) -> None:
    actor = FakeActor()
    launcher = RayLauncher("127.0.0.1:1", poll_interval=0.01)
    monkeypatch.setattr(ray, "get_actor", lambda name, namespace=None: actor)
    record = make_record()
    # As at start-up: the stored bots come before the cluster is joined.
    await launcher.reattach(record)
    assert record.status == "starting"
    assert record.node is None
    joined = asyncio.Event()

    async def join() -> None:
        await joined.wait()
        launcher._connected = True

    monkeypatch.setattr(launcher, "_join", join)
    await launcher.open()
    assert not launcher.ready
    joined.set()
    await wait_until(lambda: record.status == "in_call")
    assert record.node == "n1"
    await launcher.close()
    assert record.status == "left"


async def test_start_before_the_join_is_a_launch_error_naming_the_cluster() -> None:
    from api.launcher import LaunchError

    launcher = RayLauncher("127.0.0.1:1")
    with pytest.raises(
        LaunchError, match=r"has not joined the Ray cluster at 127\.0\.0\.1:1 yet"
    ):
        await launcher.start(make_record())
    assert not launcher.ready


class FakeCluster:
    """Creates FakeActors as Ray would, each taking one free slot."""

    def __init__(self, free: int) -> None:
        self.free = free
        self.created: list[FakeActor] = []
        self.options_seen: dict[str, Any] = {}
        self.started: asyncio.Future[dict[str, Any]] | None = None

    def options(self, **options: Any) -> FakeCluster:
        self.options_seen = options
        return self

    def remote(self, log_level: str) -> FakeActor:
        actor = FakeActor()
        if self.started is not None:
            started = self.started
            actor.start = Method(lambda config: None)
            actor.start.remote = lambda config: started  # type: ignore[method-assign]
        else:
            actor.start = Method(lambda config: actor.where._answer())
        self.created.append(actor)
        self.free -= 1
        return actor


async def joined_launcher(
    monkeypatch: pytest.MonkeyPatch, cluster: FakeCluster
) -> RayLauncher:
    launcher = await attach(monkeypatch, {})
    launcher._actor_class = cluster

    async def free_slots() -> float:
        return float(cluster.free)

    monkeypatch.setattr(launcher, "free_slots", free_slots)
    return launcher


async def test_an_actor_is_detached_named_and_asks_for_one_slot(
    monkeypatch: pytest.MonkeyPatch, killed: list[Any]
) -> None:
    cluster = FakeCluster(free=2)
    launcher = await joined_launcher(monkeypatch, cluster)
    record = make_record("b-7")
    await launcher.start(record)
    assert cluster.options_seen == {
        "name": "b-7",
        "namespace": "callbot",
        "lifetime": "detached",
        "num_cpus": 0,
        "resources": {"callbot_slot": 1},
        "max_restarts": 0,
        "max_task_retries": 0,
    }
    assert (record.pid, record.node) == (4321, "n1")
    await wait_until(lambda: record.status == "in_call")
    await launcher.close()
    assert record.status == "left"


async def test_two_starts_racing_for_the_last_slot_one_is_refused_at_once(
    monkeypatch: pytest.MonkeyPatch, killed: list[Any]
) -> None:
    from api.launcher import LaunchError

    cluster = FakeCluster(free=1)
    launcher = await joined_launcher(monkeypatch, cluster)
    first, second = make_record("b-1"), make_record("b-2")
    results = await asyncio.gather(
        launcher.start(first), launcher.start(second), return_exceptions=True
    )
    assert results[0] is None
    assert isinstance(results[1], LaunchError)
    assert str(results[1]) == (
        "no free callbot_slot in the Ray cluster; add nodes or slots"
    )
    assert len(cluster.created) == 1
    await launcher.close()


async def test_a_stop_during_the_start_makes_the_bot_leave_once_it_runs(
    monkeypatch: pytest.MonkeyPatch, killed: list[Any]
) -> None:
    cluster = FakeCluster(free=1)
    cluster.started = asyncio.get_running_loop().create_future()
    launcher = await joined_launcher(monkeypatch, cluster)
    record = make_record()
    starting = asyncio.create_task(launcher.start(record))
    await wait_until(lambda: len(cluster.created) == 1)
    # DELETE while the actor still builds its bot.
    await launcher.leave(record)
    assert record.status == "leaving"
    actor = cluster.created[0]
    assert actor.leave.calls == []
    cluster.started.set_result({"pid": 99, "host": "h", "node_id": "n2"})
    await starting
    assert actor.leave.calls == [()]
    await wait_until(lambda: record.status == "left")
    assert killed == [actor]
