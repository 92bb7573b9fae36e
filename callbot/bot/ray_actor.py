"""One bot in a Ray actor: what ``launcher = ray`` runs on a cluster's nodes.

The actor is the Ray counterpart of :mod:`callbot.bot.worker`. It builds the
bot from the same configuration line and keeps the same JSON reports; the
control plane fetches them with :meth:`BotActor.poll` instead of reading a
pipe, and sends ``leave`` and ``attention`` as actor calls. Each actor lives in
a Ray worker process of its own, so one bot that crashes takes no other down.

This module does not import Ray: the launcher (:mod:`api.ray_launcher`) wraps
the class with ``ray.remote`` when it creates the actor.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import sys
from collections import deque
from typing import Any

from pydantic import ValidationError

from callbot.bot.bot import Bot
from callbot.bot.plugin import PluginError
from callbot.bot.worker import parse_config

logger = logging.getLogger(__name__)

# Set on a node, the addresses this node's bots' ICE may use: they win over the
# control plane's, which are the control plane host's own (a JSON list).
ICE_ADDRESSES_VARIABLE = "CALLBOT_ICE_ADDRESSES"
# Log lines kept for ``GET /bots/{id}/logs``.
LOG_LINES = 500
# Reports kept behind the newest offset a poll acknowledged, so that a control
# plane that restarts before saving its offset can read them again.
REPLAY_MARGIN = 2000

EXIT_LEFT = 0
EXIT_FAILED = 1
EXIT_BAD_CONFIG = 2
# How often the actor checks that its Ray node (the raylet, its parent) lives.
NODE_CHECK_INTERVAL = 1.0
# Seconds an orphaned bot gets to leave its call before its process exits.
ORPHAN_LEAVE_TIMEOUT = 10.0


class _TailHandler(logging.Handler):
    """Keeps the newest formatted log lines."""

    def __init__(self, lines: int) -> None:
        super().__init__()
        self.lines: deque[str] = deque(maxlen=lines)
        # Lines emitted so far: the offset of the line after the newest.
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
            self.count += 1
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)

    def since(self, offset: int) -> list[str]:
        """The kept lines from ``offset`` on."""
        new = self.count - max(offset, 0)
        if new <= 0:
            return []
        return list(self.lines)[-min(new, len(self.lines)) :]


_tail: _TailHandler | None = None


def _setup_logging(level: str) -> _TailHandler:
    """Log to stderr (Ray's worker log file) and to a tail the launcher reads.

    Once per process: a Ray worker process holds one actor.
    """
    global _tail
    if _tail is not None:
        return _tail
    from callbot.cli import quiet_libraries

    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    tail = _TailHandler(LOG_LINES)
    tail.setFormatter(formatter)
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(formatter)
    root = logging.getLogger()
    root.setLevel(level.upper())
    root.addHandler(stderr)
    root.addHandler(tail)
    quiet_libraries(level.upper())
    _tail = tail
    return tail


def node_config(config_line: str) -> str:
    """The configuration line with this node's ICE addresses, when it has any."""
    local = os.environ.get(ICE_ADDRESSES_VARIABLE)
    if not local:
        return config_line
    addresses = json.loads(local)
    if not isinstance(addresses, list) or not all(
        isinstance(a, str) for a in addresses
    ):
        raise ValueError(f"{ICE_ADDRESSES_VARIABLE} must be a JSON list of strings")
    data = json.loads(config_line)
    if not isinstance(data, dict):
        return config_line
    data["ice_addresses"] = addresses
    return json.dumps(data)


class BotActor:
    """A bot run by a Ray actor; every method is called by the control plane."""

    def __init__(self, log_level: str = "INFO") -> None:
        self._tail = _setup_logging(log_level)
        # Report lines from offset ``_base`` on.
        self._lines: list[str] = []
        self._base = 0
        self._bot: Bot | None = None
        self._task: asyncio.Task[None] | None = None
        self._returncode: int | None = None
        # Ray starts its workers as children of the node's raylet.
        self._raylet = os.getppid()
        self._node_check: asyncio.Task[None] | None = None

    def _report(self, report: dict[str, Any]) -> None:
        self._lines.append(json.dumps(report, separators=(",", ":"), default=str))

    async def start(self, config_line: str) -> dict[str, Any]:
        """Build the bot from the worker's configuration line and start it."""
        if self._task is not None or self._returncode is not None:
            raise RuntimeError("this actor has already run a bot")
        try:
            line = node_config(config_line)
        except ValueError as exc:
            return self._refuse(f"this Ray node is misconfigured: {exc}")
        try:
            config, bot_id = parse_config(line)
            bot = Bot(config, on_report=self._report, bot_id=bot_id)
        except (ValueError, ValidationError, PluginError) as exc:
            return self._refuse(f"bad config: {exc}")
        self._bot = bot
        self._task = asyncio.create_task(self._run(bot), name=f"bot-{bot_id}")
        self._node_check = asyncio.create_task(self._check_node(), name="node-check")
        logger.info("bot %s started in actor pid %d", bot_id, os.getpid())
        return self.where()

    def _refuse(self, reason: str) -> dict[str, Any]:
        logger.error("the bot cannot start: %s", reason)
        self._report({"type": "status", "status": "failed", "reason": reason})
        self._returncode = EXIT_BAD_CONFIG
        return self.where()

    async def _check_node(self) -> None:
        """Leave the call once the Ray node is gone: nobody could stop the bot.

        Ray does not always end a worker whose raylet died; the bot would stay
        in its call while the control plane has marked it failed.
        """
        while self._returncode is None:
            await asyncio.sleep(NODE_CHECK_INTERVAL)
            if os.getppid() == self._raylet:
                continue
            logger.warning(
                "the Ray node of this actor is gone (raylet pid %d); leaving the call",
                self._raylet,
            )
            if self._bot is not None and self._task is not None:
                self._bot.leave()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        asyncio.shield(self._task), ORPHAN_LEAVE_TIMEOUT
                    )
            for handler in logging.getLogger().handlers:
                handler.flush()
            os._exit(EXIT_FAILED)
            return

    async def _run(self, bot: Bot) -> None:
        try:
            await bot.run()
        except Exception:
            logger.exception("bot %s crashed", bot.bot_id)
            self._report(
                {"type": "status", "status": "failed", "reason": "the bot crashed"}
            )
            self._returncode = EXIT_FAILED
            return
        self._returncode = EXIT_FAILED if bot.status == "failed" else EXIT_LEFT

    async def poll(self, offset: int, log_offset: int = 0) -> dict[str, Any]:
        """The reports from ``offset`` on; ``returncode`` once the bot has ended.

        ``returncode`` comes only with the last reports, so a caller that sees
        it has seen everything. ``offset`` acknowledges the reports before it.
        ``log`` holds the log lines from ``log_offset`` on (as many as are
        kept), ``log_offset`` the offset to ask from next time.
        """
        drop = min(offset - REPLAY_MARGIN, self._base + len(self._lines)) - self._base
        if drop > 0:
            del self._lines[:drop]
            self._base += drop
        start = max(offset - self._base, 0)
        lines = self._lines[start:]
        return {
            "lines": lines,
            "offset": self._base + len(self._lines),
            "skipped": max(self._base - offset, 0),
            "returncode": self._returncode,
            "log": self._tail.since(log_offset),
            "log_offset": self._tail.count,
        }

    async def leave(self) -> bool:
        """Ask the bot to leave its call; False if it is not running."""
        if self._bot is None or self._returncode is not None:
            return False
        logger.info("bot %s asked to leave", self._bot.bot_id)
        self._bot.leave()
        return True

    async def attention(self, level: str) -> bool:
        """Hand the bot a new attention level (high, medium or low)."""
        if self._bot is None or level not in ("high", "medium", "low"):
            return False
        self._bot.set_attention(level)
        return True

    async def logs(self, lines: int) -> list[str]:
        """The newest log lines of this actor's process."""
        if lines <= 0:
            return []
        return list(self._tail.lines)[-lines:]

    def where(self) -> dict[str, Any]:
        """The process and Ray node this bot runs on."""
        import ray

        context = ray.get_runtime_context()
        return {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "node_id": context.get_node_id(),
        }
