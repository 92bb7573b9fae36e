"""How the control plane runs bots: the launcher seam and its local processes.

Each local bot runs under a keeper (:mod:`api.keeper`), a small process in a
session of its own that owns the worker's pipes and writes everything to the
bot's directory (:mod:`api.botdir`). The launcher only reads those files and
writes commands to the keeper's FIFO, so it can die and a new launcher can
pick every running bot up again from the offsets the store saved.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import importlib.util
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any

from api import lifecycle, requestid
from api.botdir import BotDir
from api.botlog import BotLog
from api.record import BotRecord

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
ChangeListener = Callable[[BotRecord], None]

WORKER_MODULE = "callbot.bot.worker"
KEEPER_MODULE = "api.keeper"
WARM_PREFIX = "warm-"

# Why the bots left when the control plane stopped and took them along.
SHUTDOWN_REASON = "control plane shut down"

# The worker logs kept with a crashed bot.
LOG_TAIL_LINES = 20


class LaunchError(Exception):
    """A bot could not be started at all."""


def overdue(
    record: BotRecord,
    *,
    silent_for: float,
    leave_deadline: float | None,
    now: float,
    heartbeat_timeout: float,
    start_timeout: float,
    leave_timeout: float,
) -> tuple[str, str] | None:
    """Why a running bot must be killed, as (code, message); None if it need not.

    Shared by every launcher: a bot silent past the heartbeat (or, before its
    first report, the start) timeout, or one asked to leave whose deadline
    (monotonic ``now`` against ``leave_deadline``) has passed.
    """
    if record.terminal:
        return None
    limit = heartbeat_timeout if record.first_report_at is not None else start_timeout
    if silent_for > limit:
        return lifecycle.HEARTBEAT_LOST, f"no report from the bot for {limit:g} s"
    if leave_deadline is not None and now > leave_deadline:
        return (
            lifecycle.LEAVE_TIMEOUT,
            f"the bot did not leave within {leave_timeout:g} s of being asked; killed",
        )
    return None


def follow_in_background(
    coro: Coroutine[Any, Any, None], name: str
) -> asyncio.Task[None]:
    """A task that follows a bot beyond the request that started it: its log
    lines must not carry that request's id."""
    context = contextvars.copy_context()
    context.run(requestid.current.set, None)
    return asyncio.create_task(coro, name=name, context=context)


class Launcher(ABC):
    """Starts bots and asks them to leave; the bots' reports update their records.

    ``on_change`` is told after every batch of changes to a record, so the
    control plane can save it and send its events on.
    """

    on_change: ChangeListener | None = None

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

    async def set_attention(self, record: BotRecord, level: str) -> bool:
        """Hand the bot a new attention level; False if it cannot be reached."""
        return False

    @property
    def warm_pool(self) -> tuple[int, int] | None:
        """Warm workers (ready, still starting); None without a warm pool."""
        return None

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Get ready to start bots (the control plane is starting)."""

    async def reattach(self, record: BotRecord) -> None:
        """Watch a bot a previous control plane started; fails it if it cannot."""
        record.fail(
            "the launcher cannot reach bots of an earlier control plane",
            time.time(),
            code=lifecycle.NOT_REATTACHED,
        )
        self._changed(record)

    async def detach(self) -> None:
        """Stop watching, leaving every bot running for the next control plane."""
        await self.close()

    def logs(self, record: BotRecord, lines: int) -> list[str]:
        """The last lines the bot's worker logged."""
        return record.log_tail[-lines:]

    async def read_logs(self, record: BotRecord, lines: int) -> list[str]:
        """The same, for launchers that must ask the bot's process for them."""
        return self.logs(record, lines)

    def _changed(self, record: BotRecord) -> None:
        if self.on_change is not None:
            try:
                self.on_change(record)
            except Exception:
                BotLog(logger, record.bot_id, record.user_id, record.room_id).exception(
                    "saving the bot failed"
                )


class _Watched:
    """One bot the launcher watches through its directory."""

    def __init__(self, record: BotRecord, bot_dir: BotDir, now: float) -> None:
        self.record = record
        self.dir = bot_dir
        self.last_report = now
        self.last_keeper_check = now
        self.leave_deadline: float | None = None
        self.killed = False
        self.task: asyncio.Task[None] | None = None
        self.log = BotLog(logger, record.bot_id, record.user_id, record.room_id)


class _Warm:
    """One warm worker of the pool: its directory and when it was started."""

    def __init__(self, bot_dir: BotDir, started: float) -> None:
        self.dir = bot_dir
        self.started = started

    def ready(self) -> bool:
        """Its worker said its imports are done, and has not ended since."""
        return self.dir.is_ready() and not self.dir.exit.exists()


class LocalProcessLauncher(Launcher):
    """Runs each bot as its own OS process: ``python -m callbot.bot.worker``."""

    def __init__(
        self,
        *,
        command: Sequence[str] | None = None,
        leave_timeout: float = 10.0,
        env: Mapping[str, str] | None = None,
        clock: Clock = time.time,
        bots_dir: Path | None = None,
        heartbeat_timeout: float = 10.0,
        start_timeout: float = 60.0,
        poll_interval: float = 0.1,
        warm_pool: int = 0,
        warm_ready_timeout: float = 60.0,
    ) -> None:
        """
        Args:
            command: the worker's command line; the real worker by default.
            leave_timeout: seconds a worker gets to exit after a leave before
                it is killed.
            env: variables added to the workers' environment, for example
                ``CALLBOT_LOG_LEVEL``.
            bots_dir: where the bots' directories go; a temporary directory
                (removed on close) when None.
            heartbeat_timeout: a bot silent this long is failed
                (``heartbeat_lost``) and killed; it reports every second.
            start_timeout: the same for a bot that has not reported yet.
            warm_pool: workers kept started with their imports done, each
                waiting for a bot; refilled in the background.
            warm_ready_timeout: a warm worker not ready (see :mod:`api.keeper`)
                this long after its start is dropped; the pool then stops
                refilling until the next bot starts.
        """
        self._command = (
            list(command)
            if command is not None
            else [sys.executable, "-m", WORKER_MODULE]
        )
        self._leave_timeout = leave_timeout
        self._env = dict(os.environ, **env) if env else None
        self._clock = clock
        self._own_dir = bots_dir is None
        self._bots_dir = (
            bots_dir
            if bots_dir is not None
            else Path(tempfile.mkdtemp(prefix="callbot-bots-"))
        ).resolve()
        self._bots_dir.mkdir(parents=True, exist_ok=True)
        self._heartbeat_timeout = heartbeat_timeout
        self._start_timeout = start_timeout
        self._poll = poll_interval
        self._watched: dict[str, _Watched] = {}
        self._closing = False
        self._pool_size = warm_pool
        self._warm: list[_Warm] = []
        self._warm_ready_timeout = warm_ready_timeout
        self._filler: asyncio.Task[None] | None = None
        self._drop_warm()

    @property
    def ready(self) -> bool:
        if self._closing:
            return False
        if self._command[1:3] == ["-m", WORKER_MODULE]:
            return importlib.util.find_spec(WORKER_MODULE) is not None
        return True

    @property
    def running(self) -> int:
        return len(self._watched)

    @property
    def warm(self) -> int:
        """Warm workers done with their imports, waiting for a bot."""
        return sum(1 for w in self._warm if w.ready())

    @property
    def warm_starting(self) -> int:
        """Warm workers started but not ready yet."""
        return len(self._warm) - self.warm

    @property
    def warm_pool(self) -> tuple[int, int] | None:
        if not self._pool_size:
            return None
        return (self.warm, self.warm_starting)

    async def start(self, record: BotRecord) -> None:
        if self._closing:
            raise LaunchError("the control plane is shutting down")
        bot_dir = self._claim_warm(record)
        if bot_dir is None:
            bot_dir = BotDir(self._bots_dir / record.bot_id)
            bot_dir.create(record.worker_config())
            await self._spawn_keeper(bot_dir)
        self._top_up()

        pid = bot_dir.read_pid(bot_dir.worker_pid)
        assert pid is not None
        # Known limit: a control plane killed before the caller saves these
        # leaves the bot running but not reattachable.
        record.pid = pid
        record.keeper_pid = bot_dir.read_pid(bot_dir.keeper_pid)
        record.state_dir = str(bot_dir.path)
        watched = self._watch(record, bot_dir)
        watched.log.info("started worker pid %d", pid)
        if record.leave_requested:
            # A stop that came while the worker was starting.
            await self.leave(record)

    async def open(self) -> None:
        self._top_up()

    async def _spawn_keeper(self, bot_dir: BotDir) -> None:
        """Start a keeper on the directory; returns once its worker runs."""
        try:
            starter = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                KEEPER_MODULE,
                str(bot_dir.path),
                # A warm keeper ends once this process has been gone a while.
                "--owner",
                str(os.getpid()),
                "--",
                *self._command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                env=self._env,
            )
            try:
                await starter.wait()
            except asyncio.CancelledError:
                # Closing while a warm keeper starts: the starter only forks
                # and exits, so reap it rather than leave it running.
                await starter.wait()
                raise
        except OSError as exc:
            raise LaunchError(f"cannot start the bot keeper: {exc}") from exc

        # The keeper writes the worker's pid, or why it could not start it.
        deadline = time.monotonic() + 10.0
        while bot_dir.read_pid(bot_dir.worker_pid) is None:
            ended = bot_dir.read_exit()
            if ended is not None and "spawn_error" in ended:
                shutil.rmtree(bot_dir.path, ignore_errors=True)
                raise LaunchError(
                    f"cannot start the bot worker: {ended['spawn_error']}"
                )
            if time.monotonic() > deadline:
                raise LaunchError("the bot keeper did not start its worker in 10 s")
            await asyncio.sleep(0.01)

    def _claim_warm(self, record: BotRecord) -> BotDir | None:
        """A warm worker for this bot: its directory renamed, its config given.

        A ready worker if there is one, else the one started first (its
        imports are under way, so it is still sooner than a cold start).
        """
        self._prune_warm()
        while self._warm:
            warm = next((w for w in self._warm if w.ready()), self._warm[0])
            self._warm.remove(warm)
            if (
                not warm.dir.keeper_alive()
                or warm.dir.read_exit() is not None
                or not _running(warm.dir.read_pid(warm.dir.worker_pid))
            ):
                # Its keeper notices a dead worker only on its next look.
                warm.dir.send({"cmd": "kill"})
                shutil.rmtree(warm.dir.path, ignore_errors=True)
                continue
            bot_dir = BotDir(self._bots_dir / record.bot_id)
            os.rename(warm.dir.path, bot_dir.path)
            bot_dir.write_config(record.worker_config())
            if not bot_dir.send({"cmd": "start"}):
                continue
            return bot_dir
        return None

    def _prune_warm(self) -> bool:
        """Drop warm workers that ended or never got ready; True if any went."""
        dropped = False
        now = time.monotonic()
        for warm in list(self._warm):
            if warm.ready():
                continue
            ended = not warm.dir.keeper_alive() or warm.dir.read_exit() is not None
            if ended:
                logger.warning("warm pool: worker in %s ended; dropped", warm.dir.path)
            elif now - warm.started > self._warm_ready_timeout:
                logger.warning(
                    "warm pool: worker in %s not ready in %g s; dropped",
                    warm.dir.path,
                    self._warm_ready_timeout,
                )
            else:
                continue
            dropped = True
            self._warm.remove(warm)
            warm.dir.send({"cmd": "kill"})
            shutil.rmtree(warm.dir.path, ignore_errors=True)
        return dropped

    def _top_up(self) -> None:
        if self._pool_size and (self._filler is None or self._filler.done()):
            self._filler = asyncio.create_task(self._fill_pool(), name="warm-pool")

    async def _fill_pool(self) -> None:
        """Fill the pool, then watch it until every warm worker is ready.

        A warm worker that ends or is not ready in time stops the filling (as a
        keeper that cannot start does) until the next bot starts, so a worker
        that cannot get ready is not started again and again.
        """
        while not self._closing:
            if self._prune_warm():
                return
            if len(self._warm) < self._pool_size:
                started = time.monotonic()
                warm = BotDir(self._bots_dir / f"{WARM_PREFIX}{secrets.token_hex(4)}")
                warm.create(None)
                try:
                    await self._spawn_keeper(warm)
                except LaunchError as exc:
                    logger.warning("warm pool: %s", exc)
                    return
                self._warm.append(_Warm(warm, started))
                logger.debug("warm worker started in %s", warm.path)
            elif all(w.ready() for w in self._warm):
                return
            else:
                await asyncio.sleep(self._poll)

    async def wait_warm(self, count: int, timeout: float) -> bool:
        """Wait until ``count`` warm workers are ready; False after the timeout."""
        deadline = time.monotonic() + timeout
        while self.warm < count:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(self._poll)
        return True

    def _drop_warm(self) -> None:
        """Stop the idle warm workers (and any a dead control plane left)."""
        dirs = {w.dir.path for w in self._warm}
        dirs.update(self._bots_dir.glob(f"{WARM_PREFIX}*"))
        self._warm.clear()
        for path in dirs:
            warm = BotDir(path)
            if not warm.send({"cmd": "kill"}):
                # A keeper still starting does not listen yet: end its session.
                keeper = _read_pid(warm.keeper_pid)
                if keeper is not None and _is_keeper(keeper):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(keeper, signal.SIGKILL)
            # A keeper still starting may add files while the tree goes; the
            # directory must go for good, or a keeper would wait in it.
            for _ in range(3):
                shutil.rmtree(path, ignore_errors=True)
                if not path.exists():
                    break
                time.sleep(0.05)

    async def reattach(self, record: BotRecord) -> None:
        if record.state_dir is None or not Path(record.state_dir).is_dir():
            await super().reattach(record)
            return
        watched = self._watch(record, BotDir(Path(record.state_dir)))
        watched.log.info(
            "reattached to worker pid %s at report offset %d",
            record.pid,
            record.report_offset,
        )
        if record.status == "leaving":
            await self.leave(record)

    def _watch(self, record: BotRecord, bot_dir: BotDir) -> _Watched:
        watched = _Watched(record, bot_dir, time.monotonic())
        self._watched[record.bot_id] = watched
        watched.task = follow_in_background(
            self._follow(watched), f"follow-{record.bot_id}"
        )
        return watched

    async def leave(self, record: BotRecord) -> None:
        record.request_leave(self._clock())
        self._changed(record)
        watched = self._watched.get(record.bot_id)
        if watched is None:
            return
        if watched.leave_deadline is None:
            watched.log.info("asking the bot to leave")
            watched.leave_deadline = time.monotonic() + self._leave_timeout
        watched.dir.send({"cmd": "leave"})

    async def set_attention(self, record: BotRecord, level: str) -> bool:
        watched = self._watched.get(record.bot_id)
        if watched is None:
            return False
        watched.log.info("attention level %s", level)
        return watched.dir.send({"cmd": "attention", "level": level})

    async def close(self) -> None:
        self._closing = True
        await self._stop_filling()
        watched = list(self._watched.values())
        for w in watched:
            w.record.request_leave(self._clock(), SHUTDOWN_REASON)
            await self.leave(w.record)
        tasks = [w.task for w in watched if w.task is not None]
        if tasks:
            # The leave deadlines kill stragglers; this only bounds the wait.
            await asyncio.wait(tasks, timeout=self._leave_timeout + 5.0)
        await self._stop_following()
        if self._own_dir:
            shutil.rmtree(self._bots_dir, ignore_errors=True)

    def logs(self, record: BotRecord, lines: int) -> list[str]:
        if record.state_dir is None:
            return super().logs(record, lines)
        return BotDir(Path(record.state_dir)).log_tail(lines)

    async def detach(self) -> None:
        self._closing = True
        await self._stop_filling()
        logger.info("detaching from %d running bots", len(self._watched))
        await self._stop_following()

    async def _stop_filling(self) -> None:
        if self._filler is not None and not self._filler.done():
            self._filler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._filler
        self._drop_warm()

    async def _stop_following(self) -> None:
        for w in list(self._watched.values()):
            if w.task is not None and not w.task.done():
                w.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await w.task
        self._watched.clear()

    async def _follow(self, w: _Watched) -> None:
        try:
            while not self._check(w):
                await asyncio.sleep(self._poll)
        finally:
            self._watched.pop(w.record.bot_id, None)

    def _read(self, w: _Watched) -> bool:
        record = w.record
        lines, offset = w.dir.read_reports(record.report_offset)
        if offset == record.report_offset:
            return False
        now = self._clock()
        for line in lines:
            record.feed_line(line, now)
        record.report_offset = offset
        w.last_report = time.monotonic()
        return True

    def _check(self, w: _Watched) -> bool:
        """One look at the bot's directory; True once the bot is gone for good."""
        record = w.record
        changed = self._read(w)

        ended = w.dir.read_exit()
        if ended is not None:
            # The keeper writes exit.json only after the last report line.
            self._read(w)
            returncode = int(ended.get("returncode", -1))
            if returncode != 0:
                record.log_tail = w.dir.log_tail(LOG_TAIL_LINES)
            record.process_exited(returncode, self._clock())
            self._changed(record)
            return True

        mono = time.monotonic()
        verdict = overdue(
            record,
            silent_for=mono - w.last_report,
            leave_deadline=w.leave_deadline,
            now=mono,
            heartbeat_timeout=self._heartbeat_timeout,
            start_timeout=self._start_timeout,
            leave_timeout=self._leave_timeout,
        )
        if verdict is not None:
            code, message = verdict
            w.log.warning("%s; killing the worker", message)
            record.log_tail = w.dir.log_tail(LOG_TAIL_LINES)
            record.fail(message, self._clock(), code=code)
            self._kill(w)
            changed = True

        if mono - w.last_keeper_check > 1.0:
            w.last_keeper_check = mono
            if not w.dir.keeper_alive() and w.dir.read_exit() is None:
                self._read(w)
                record.log_tail = w.dir.log_tail(LOG_TAIL_LINES)
                record.fail(
                    "the bot's keeper process is gone",
                    self._clock(),
                    code=lifecycle.KEEPER_LOST,
                )
                self._kill(w)
                self._changed(record)
                return True

        if changed:
            self._changed(record)
        return False

    def _kill(self, w: _Watched) -> None:
        """Kill the worker: through its keeper, or its whole session without one."""
        w.killed = True
        if w.dir.send({"cmd": "kill"}):
            return
        keeper = w.record.keeper_pid
        # The pid comes from the bot's directory and may be an earlier
        # container's or boot's, reused since: kill its session only if it is
        # a keeper and none of the bots or warm workers this launcher knows.
        others = {o.record.keeper_pid for o in self._watched.values() if o is not w} | {
            _read_pid(w.dir.keeper_pid) for w in self._warm
        }
        if keeper is not None and keeper not in others and _is_keeper(keeper):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(keeper, signal.SIGKILL)


def _running(pid: int | None) -> bool:
    """Whether process ``pid`` runs (exists and is not a zombie)."""
    if pid is None:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _is_keeper(pid: int) -> bool:
    """Whether process ``pid`` runs a keeper (``python -m api.keeper ...``)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return KEEPER_MODULE in (a.decode(errors="replace") for a in raw.split(b"\0"))


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None
