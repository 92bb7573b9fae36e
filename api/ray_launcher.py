"""``launcher = ray``: each bot is a detached, named Ray actor on a cluster.

The control plane joins the Ray cluster at ``ray_address`` as a driver. Every
bot becomes a :class:`callbot.bot.ray_actor.BotActor` in a Ray worker process
of its own, named by the bot id in the launcher's namespace and detached, so
it outlives the control plane: a new control plane finds it again by name and
reads its reports on from the offset the store saved. Placement is by the
custom resource ``callbot_slot``: a node offers as many bots as it has slots.

A stop asks the actor's bot to leave and kills the actor once the bot has
ended, or when the leave timeout runs out. An actor that dies (its process
killed, its node lost) fails the bot with Ray's reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections import deque
from typing import Any

from api import lifecycle
from api.botlog import BotLog
from api.launcher import (
    LOG_TAIL_LINES,
    SHUTDOWN_REASON,
    Clock,
    Launcher,
    LaunchError,
    follow_in_background,
    overdue,
)
from api.record import BotRecord

logger = logging.getLogger(__name__)

SLOT_RESOURCE = "callbot_slot"
# Seconds between tries to join a cluster that could not be reached.
RECONNECT_INTERVAL = 5.0
# Seconds between log lines while a join is still under way.
JOIN_PATIENCE = 30.0
# How often the joined cluster is asked whether it answers, and how long an
# answer may take before the launcher counts it as lost (not ready).
HEALTH_INTERVAL = 5.0
HEALTH_TIMEOUT = 5.0
# How long a new actor may take to hold its slot before the next start looks.
PLACEMENT_WAIT = 2.0
# How long ray.kill of a finished bot's actor may take before it is left to Ray.
_KILL_TIMEOUT = 5.0


class RayUnavailable(LaunchError):
    """Ray is not installed, or its cluster cannot be joined."""


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailable(
            "launcher = ray needs Ray: pip install 'callbot[ray]'"
        ) from exc
    return ray


class _Actor:
    """One bot's actor as the launcher follows it."""

    def __init__(self, record: BotRecord, handle: Any, now: float) -> None:
        self.record = record
        self.handle = handle
        self.last_report = now
        self.leave_deadline: float | None = None
        self.task: asyncio.Task[None] | None = None
        self.log = BotLog(logger, record.bot_id, record.user_id, record.room_id)
        # The actor's newest log lines, kept for when it can no longer answer.
        self.log_lines: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        self.log_offset = 0


class RayLauncher(Launcher):
    """Runs each bot as a detached Ray actor, placed by ``callbot_slot``."""

    def __init__(
        self,
        address: str,
        *,
        namespace: str = "callbot",
        leave_timeout: float = 10.0,
        heartbeat_timeout: float = 10.0,
        start_timeout: float = 60.0,
        poll_interval: float = 0.2,
        log_level: str = "INFO",
        clock: Clock = time.time,
    ) -> None:
        """
        Args:
            address: the cluster's GCS address (``host:port``), or ``auto``.
            namespace: the Ray namespace the bots' named actors live in.
            leave_timeout: seconds a bot gets to leave before its actor is
                killed.
            heartbeat_timeout: a bot whose actor answers but reports nothing
                for this long is failed (``heartbeat_lost``) and killed.
            start_timeout: how long a new actor may wait for a free slot and
                start its bot.
            log_level: the log level of the bots' processes.
        """
        self._address = address
        self._namespace = namespace
        self._leave_timeout = leave_timeout
        self._heartbeat_timeout = heartbeat_timeout
        self._start_timeout = start_timeout
        self._poll = poll_interval
        self._log_level = log_level
        self._clock = clock
        self._connected = False
        self._closing = False
        self._actors: dict[str, _Actor] = {}
        self._actor_class: Any = None
        # Bots of an earlier control plane, waiting for the cluster.
        self._pending: list[BotRecord] = []
        self._connector: asyncio.Task[None] | None = None
        # False while the joined cluster does not answer.
        self._cluster_ok = True
        # Starts check for a free slot and create their actor one at a time.
        self._placing = asyncio.Lock()

    @property
    def ready(self) -> bool:
        return self._connected and self._cluster_ok and not self._closing

    @property
    def running(self) -> int:
        return len(self._actors)

    async def open(self) -> None:
        """Join the cluster in the background; ready once joined."""
        if self._connector is None or self._connector.done():
            self._connector = asyncio.create_task(self._keep_joining(), name="ray-join")

    async def _keep_joining(self) -> None:
        while not self._connected and not self._closing:
            try:
                await self._join()
            except RayUnavailable as exc:
                logger.error("%s; trying again in %g s", exc, RECONNECT_INTERVAL)
                await asyncio.sleep(RECONNECT_INTERVAL)
        pending, self._pending = self._pending, []
        for record in pending:
            if not record.terminal:
                await self.reattach(record)
        await self._watch_cluster()

    async def _watch_cluster(self) -> None:
        """Keep ``ready`` true only while the cluster's GCS answers.

        Known limit: Ray ends a driver whose GCS has been gone for 60 s
        (``gcs_rpc_server_reconnect_timeout_s``); the control plane then
        exits, and its supervisor's restart reattaches the bots.
        """
        ray = _ray()
        while not self._closing:
            await asyncio.sleep(HEALTH_INTERVAL)
            try:
                await asyncio.wait_for(
                    asyncio.to_thread(ray.available_resources), HEALTH_TIMEOUT
                )
            except Exception as exc:
                if self._cluster_ok:
                    logger.error(
                        "the Ray cluster at %s does not answer (%s); not ready",
                        self._address,
                        _first_line(exc) if str(exc) else "timed out",
                    )
                self._cluster_ok = False
                continue
            if not self._cluster_ok:
                logger.info("the Ray cluster at %s answers again", self._address)
            self._cluster_ok = True

    async def _join(self) -> None:
        """``ray.init`` in a thread of its own: it blocks while no GCS answers."""
        ray = _ray()
        loop = asyncio.get_running_loop()
        joined: asyncio.Future[None] = loop.create_future()

        def settle(error: BaseException | None) -> None:
            if joined.done():
                return
            if error is None:
                joined.set_result(None)
            else:
                joined.set_exception(error)

        def run() -> None:
            try:
                ray.init(
                    address=self._address,
                    namespace=self._namespace,
                    # The bots' logs stay on their nodes and in /bots/{id}/logs.
                    log_to_driver=False,
                    configure_logging=False,
                )
            except Exception as exc:
                loop.call_soon_threadsafe(settle, exc)
            else:
                loop.call_soon_threadsafe(settle, None)

        logger.info("joining the Ray cluster at %s", self._address)
        # A daemon thread: a join that never ends must not keep the process.
        threading.Thread(target=run, name="ray-join", daemon=True).start()
        while True:
            try:
                await asyncio.wait_for(asyncio.shield(joined), JOIN_PATIENCE)
                break
            except TimeoutError:
                logger.warning(
                    "still joining the Ray cluster at %s; bots cannot start yet",
                    self._address,
                )
            except Exception as exc:
                raise RayUnavailable(
                    f"cannot join the Ray cluster at {self._address}: {exc}"
                ) from exc
        from callbot.bot.ray_actor import BotActor

        self._actor_class = ray.remote(BotActor)
        self._connected = True
        logger.info(
            "joined the Ray cluster at %s (namespace %s)",
            self._address,
            self._namespace,
        )

    async def free_slots(self) -> float:
        """The ``callbot_slot`` resources no bot holds now, over all nodes."""
        ray = _ray()
        try:
            available = await asyncio.wait_for(
                asyncio.to_thread(ray.available_resources), HEALTH_TIMEOUT
            )
        except TimeoutError as exc:
            self._cluster_ok = False
            raise RayUnavailable(
                f"the Ray cluster at {self._address} does not answer"
            ) from exc
        return float(available.get(SLOT_RESOURCE, 0.0))

    async def start(self, record: BotRecord) -> None:
        if self._closing:
            raise LaunchError("the control plane is shutting down")
        if not self._connected:
            raise RayUnavailable(
                f"the control plane has not joined the Ray cluster at"
                f" {self._address} yet"
            )
        async with self._placing:
            handle = await self._place_actor(record)
        ray = _ray()
        line = json.dumps(record.worker_config(), separators=(",", ":"))
        try:
            where = await asyncio.wait_for(
                _await(handle.start.remote(line)), self._start_timeout
            )
        except TimeoutError as exc:
            await self._kill(handle)
            raise LaunchError(
                f"no Ray node started the bot within {self._start_timeout:g} s"
            ) from exc
        except ray.exceptions.RayError as exc:
            await self._kill(handle)
            raise LaunchError(f"the bot's Ray actor failed to start: {exc}") from exc
        self._place(record, where)
        actor = self._follow(record, handle)
        actor.log.info(
            "started as Ray actor %s/%s on node %s (pid %d)",
            self._namespace,
            record.bot_id,
            record.node,
            record.pid,
        )
        if record.leave_requested:
            # A stop that came while the actor was starting.
            await self.leave(record)

    async def _place_actor(self, record: BotRecord) -> Any:
        """Create the bot's actor if a slot is free; returns once it holds one.

        Ray queues an actor no node can take; the check here refuses at once
        instead. Waiting for the slot to be taken lets the next start see it.
        Known limit: control planes sharing a cluster can still race for the
        last slot; the loser waits out ``start_timeout``.
        """
        free = await self.free_slots()
        if free < 1:
            raise LaunchError(
                f"no free {SLOT_RESOURCE} in the Ray cluster; add nodes or slots"
            )
        ray = _ray()
        try:
            handle = self._actor_class.options(
                name=record.bot_id,
                namespace=self._namespace,
                lifetime="detached",
                num_cpus=0,
                resources={SLOT_RESOURCE: 1},
                max_restarts=0,
                max_task_retries=0,
            ).remote(self._log_level)
        except (ValueError, ray.exceptions.RayError) as exc:
            # ValueError: an actor of that name lives on in the namespace.
            raise LaunchError(f"cannot create the bot's Ray actor: {exc}") from exc
        deadline = time.monotonic() + PLACEMENT_WAIT
        while time.monotonic() < deadline and await self.free_slots() >= free:
            await asyncio.sleep(0.05)
        return handle

    def _place(self, record: BotRecord, where: dict[str, Any]) -> None:
        record.pid = int(where["pid"])
        record.node = str(where["node_id"])
        record.state_dir = f"ray://{self._namespace}/{record.bot_id}"
        self._changed(record)

    async def reattach(self, record: BotRecord) -> None:
        if not self._connected:
            # Followed again once the control plane has joined the cluster.
            logger.info("bot %s waits for the Ray cluster", record.bot_id)
            self._pending.append(record)
            return
        ray = _ray()
        try:
            handle = await asyncio.to_thread(
                ray.get_actor, record.bot_id, namespace=self._namespace
            )
            where = await _await(handle.where.remote())
        except (ValueError, ray.exceptions.RayError) as exc:
            logger.warning("bot %s: its Ray actor is gone: %s", record.bot_id, exc)
            record.fail(
                f"the bot's Ray actor is gone: {_first_line(exc)}",
                self._clock(),
                code=lifecycle.NOT_REATTACHED,
            )
            self._changed(record)
            return
        self._place(record, where)
        actor = self._follow(record, handle)
        actor.log.info(
            "reattached to Ray actor on node %s at report offset %d",
            record.node,
            record.report_offset,
        )
        if record.status == "leaving":
            await self.leave(record)

    def _follow(self, record: BotRecord, handle: Any) -> _Actor:
        actor = _Actor(record, handle, time.monotonic())
        self._actors[record.bot_id] = actor
        actor.task = follow_in_background(self._watch(actor), f"follow-{record.bot_id}")
        return actor

    async def leave(self, record: BotRecord) -> None:
        record.request_leave(self._clock())
        self._changed(record)
        actor = self._actors.get(record.bot_id)
        if actor is None:
            return
        if actor.leave_deadline is None:
            actor.log.info("asking the bot to leave")
            actor.leave_deadline = time.monotonic() + self._leave_timeout
        with contextlib.suppress(Exception):
            actor.handle.leave.remote()

    async def set_attention(self, record: BotRecord, level: str) -> bool:
        actor = self._actors.get(record.bot_id)
        if actor is None:
            return False
        actor.log.info("attention level %s", level)
        try:
            return bool(await _await(actor.handle.attention.remote(level)))
        except Exception as exc:
            actor.log.warning("attention not delivered: %s", _first_line(exc))
            return False

    async def read_logs(self, record: BotRecord, lines: int) -> list[str]:
        """The newest log lines from the bot's actor, or the saved tail."""
        actor = self._actors.get(record.bot_id)
        if actor is None:
            return record.log_tail[-lines:]
        try:
            return list(await _await(actor.handle.logs.remote(lines)))
        except Exception:
            return record.log_tail[-lines:]

    async def _stop_joining(self) -> None:
        if self._connector is not None and not self._connector.done():
            self._connector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connector

    async def close(self) -> None:
        self._closing = True
        await self._stop_joining()
        actors = list(self._actors.values())
        for a in actors:
            a.record.request_leave(self._clock(), SHUTDOWN_REASON)
            await self.leave(a.record)
        tasks = [a.task for a in actors if a.task is not None]
        if tasks:
            # The leave deadlines kill stragglers; this only bounds the wait.
            await asyncio.wait(tasks, timeout=self._leave_timeout + 5.0)
        await self._stop_following()
        self._disconnect()

    async def detach(self) -> None:
        self._closing = True
        await self._stop_joining()
        logger.info("detaching from %d running bots", len(self._actors))
        await self._stop_following()
        self._disconnect()

    def _disconnect(self) -> None:
        if self._connected:
            _ray().shutdown()
            self._connected = False

    async def _stop_following(self) -> None:
        for a in list(self._actors.values()):
            if a.task is not None and not a.task.done():
                a.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await a.task
        self._actors.clear()

    async def _watch(self, actor: _Actor) -> None:
        try:
            while not await self._check(actor):
                await asyncio.sleep(self._poll)
        finally:
            self._actors.pop(actor.record.bot_id, None)

    async def _check(self, actor: _Actor) -> bool:
        """One poll of the actor; True once the bot is gone for good."""
        ray = _ray()
        record = actor.record
        try:
            answer = await asyncio.wait_for(
                _await(
                    actor.handle.poll.remote(record.report_offset, actor.log_offset)
                ),
                self._heartbeat_timeout,
            )
        except ray.exceptions.ActorDiedError as exc:
            reason = _reason(exc)
            actor.log.warning("the bot's Ray actor died: %s", reason)
            record.log_tail = list(actor.log_lines)
            record.fail(
                f"the bot's Ray actor died: {reason}",
                self._clock(),
                code=lifecycle.ACTOR_DIED,
            )
            self._changed(record)
            return True
        except (TimeoutError, ray.exceptions.RayError) as exc:
            # Unreachable for now (a busy or partitioned node): the heartbeat
            # rule below decides.
            actor.log.debug("poll failed: %s", _first_line(exc))
            answer = None

        changed = False
        if answer is not None:
            if answer["skipped"]:
                actor.log.warning(
                    "%d reports were dropped before this control plane read them",
                    answer["skipped"],
                )
            actor.log_lines.extend(answer.get("log", []))
            actor.log_offset = int(answer.get("log_offset", actor.log_offset))
            now = self._clock()
            for line in answer["lines"]:
                record.feed_line(line, now)
            if answer["offset"] != record.report_offset:
                record.report_offset = int(answer["offset"])
                actor.last_report = time.monotonic()
                changed = True
            if answer["returncode"] is not None:
                returncode = int(answer["returncode"])
                record.log_tail = list(actor.log_lines)
                record.process_exited(returncode, self._clock())
                self._changed(record)
                await self._kill(actor.handle)
                return True

        mono = time.monotonic()
        verdict = overdue(
            record,
            silent_for=mono - actor.last_report,
            leave_deadline=actor.leave_deadline,
            now=mono,
            heartbeat_timeout=self._heartbeat_timeout,
            start_timeout=self._start_timeout,
            leave_timeout=self._leave_timeout,
        )
        if verdict is not None:
            code, message = verdict
            actor.log.warning("%s; killing its actor", message)
            record.log_tail = await self._actor_logs(actor)
            record.fail(message, self._clock(), code=code)
            await self._kill(actor.handle)
            self._changed(record)
            return True
        if changed:
            self._changed(record)
        return False

    async def _actor_logs(self, actor: _Actor) -> list[str]:
        try:
            lines = await asyncio.wait_for(
                _await(actor.handle.logs.remote(LOG_TAIL_LINES)), 2.0
            )
        except Exception:
            return list(actor.log_lines)
        return list(lines)

    async def _kill(self, handle: Any) -> None:
        """Kill an actor, so its slot is free again (detached actors stay)."""
        ray = _ray()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                asyncio.to_thread(ray.kill, handle, no_restart=True), _KILL_TIMEOUT
            )


async def _await(ref: Any) -> Any:
    """Await a Ray ObjectRef from the control plane's event loop."""
    return await ref


def _reason(exc: BaseException) -> str:
    """Ray's whole explanation on one line (it spreads it over several)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:1000]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
