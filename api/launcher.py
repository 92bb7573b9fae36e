"""How the control plane runs bots: the launcher seam and its local processes."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import os
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any

from api.record import BotRecord

logger = logging.getLogger(__name__)

Clock = Callable[[], float]

WORKER_MODULE = "callbot.bot.worker"

# Report lines are small; this only bounds a misbehaving worker.
_LINE_LIMIT = 1 << 20


class LaunchError(Exception):
    """A bot could not be started at all."""


class Launcher(ABC):
    """Starts bots and asks them to leave; the bots' reports update their records."""

    @property
    @abstractmethod
    def ready(self) -> bool:
        """True while the launcher can start bots."""

    @abstractmethod
    async def start(self, record: BotRecord) -> None:
        """Start the bot of this record; raises LaunchError if it cannot start."""

    @abstractmethod
    async def leave(self, record: BotRecord) -> None:
        """Ask the bot to leave; returns at once, the record follows."""

    @abstractmethod
    async def close(self) -> None:
        """Make every bot leave and wait for them to be gone."""


class _Worker:
    """One running worker process and the tasks that watch it."""

    def __init__(self, record: BotRecord, process: asyncio.subprocess.Process) -> None:
        self.record = record
        self.process = process
        self.watcher: asyncio.Task[None] | None = None
        self.deadline: asyncio.Task[None] | None = None
        self.log = logging.LoggerAdapter(
            logger, {"bot_id": record.bot_id, "room_id": record.room_id}
        )

    async def send(self, message: dict[str, Any]) -> bool:
        """Write one JSON line to the worker's stdin; False if it is gone."""
        stdin = self.process.stdin
        if stdin is None or stdin.is_closing():
            return False
        try:
            stdin.write(json.dumps(message).encode() + b"\n")
            await stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            return False
        return True


class LocalProcessLauncher(Launcher):
    """Runs each bot as its own OS process: ``python -m callbot.bot.worker``."""

    def __init__(
        self,
        *,
        command: Sequence[str] | None = None,
        leave_timeout: float = 10.0,
        stderr: int | IO[Any] | None = None,
        env: Mapping[str, str] | None = None,
        clock: Clock = time.time,
    ) -> None:
        """
        Args:
            command: the worker's command line; the real worker by default.
            leave_timeout: seconds a worker gets to exit after a leave before
                it is killed.
            stderr: where the workers' logs go; inherited by default.
            env: variables added to the workers' environment, for example
                ``CALLBOT_LOG_LEVEL``.
        """
        self._command = (
            list(command)
            if command is not None
            else [sys.executable, "-m", WORKER_MODULE]
        )
        self._leave_timeout = leave_timeout
        self._stderr = stderr
        self._env = dict(os.environ, **env) if env else None
        self._clock = clock
        self._workers: dict[str, _Worker] = {}
        self._closing = False

    @property
    def ready(self) -> bool:
        if self._closing:
            return False
        if self._command[1:3] == ["-m", WORKER_MODULE]:
            return importlib.util.find_spec(WORKER_MODULE) is not None
        return True

    async def start(self, record: BotRecord) -> None:
        if self._closing:
            raise LaunchError("the control plane is shutting down")
        try:
            process = await asyncio.create_subprocess_exec(
                *self._command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=self._stderr,
                env=self._env,
                limit=_LINE_LIMIT,
            )
        except OSError as exc:
            raise LaunchError(f"cannot start the bot worker: {exc}") from exc

        record.pid = process.pid
        worker = _Worker(record, process)
        self._workers[record.bot_id] = worker
        worker.log.info("started worker pid %d", process.pid)
        worker.watcher = asyncio.create_task(
            self._watch(worker), name=f"watch-{record.bot_id}"
        )
        # A worker that dies before reading its config is seen by the watcher.
        await worker.send(record.worker_config())

    async def leave(self, record: BotRecord) -> None:
        record.request_leave(self._clock())
        worker = self._workers.get(record.bot_id)
        if worker is None or worker.deadline is not None:
            return
        worker.log.info("asking the bot to leave")
        await worker.send({"cmd": "leave"})
        worker.deadline = asyncio.create_task(
            self._kill_after_deadline(worker), name=f"deadline-{record.bot_id}"
        )

    async def close(self) -> None:
        self._closing = True
        workers = list(self._workers.values())
        for worker in workers:
            await self.leave(worker.record)
        watchers = [w.watcher for w in workers if w.watcher is not None]
        if watchers:
            # The deadline tasks kill stragglers; this only bounds the wait.
            await asyncio.wait(watchers, timeout=self._leave_timeout + 5.0)
        for worker in workers:
            for task in (worker.watcher, worker.deadline):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    async def _watch(self, worker: _Worker) -> None:
        process = worker.process
        record = worker.record
        assert process.stdout is not None
        try:
            while True:
                try:
                    line = await process.stdout.readline()
                except ValueError:
                    # A line over the limit: drop what was buffered and go on.
                    record.feed_line(b"<line too long>", self._clock())
                    continue
                if not line:
                    break
                record.feed_line(line, self._clock())
            returncode = await process.wait()
        finally:
            if process.stdin is not None:
                process.stdin.close()
        record.process_exited(returncode, self._clock())
        self._workers.pop(record.bot_id, None)
        if worker.deadline is not None and not worker.deadline.done():
            worker.deadline.cancel()

    async def _kill_after_deadline(self, worker: _Worker) -> None:
        try:
            await asyncio.wait_for(worker.process.wait(), self._leave_timeout)
        except TimeoutError:
            worker.record.fail(
                f"worker did not exit within {self._leave_timeout:g} s of leave;"
                " killed",
                self._clock(),
            )
            worker.log.warning("worker did not leave in time; killing it")
            with contextlib.suppress(ProcessLookupError):
                worker.process.kill()
