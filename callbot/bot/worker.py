"""``python -m callbot.bot.worker``: one bot in its own process.

stdin: one JSON line with a :class:`BotConfig` plus ``"bot_id"``, then command
lines (``{"cmd": "leave"}``, ``{"cmd": "attention", "level": "low"}``). stdout:
one JSON report per line and nothing else; logs go to stderr. The first report,
``{"type": "ready"}``, says the imports are done and the worker now waits for
its configuration; a keeper holding warm workers consumes it (:mod:`api.keeper`).
Exit 0 after leaving, 1 when the bot failed, 2 on a configuration that cannot be
read.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import threading
from typing import Any, TextIO

from pydantic import ValidationError

from callbot.bot.bot import Bot
from callbot.bot.config import BotConfig
from callbot.bot.plugin import PluginError

logger = logging.getLogger(__name__)


# The first report: imports done, waiting for the configuration on stdin.
READY_REPORT: dict[str, Any] = {"type": "ready"}


class ReportWriter:
    """Writes reports as JSON lines; the only writer of stdout."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def __call__(self, report: dict[str, Any]) -> None:
        line = json.dumps(report, separators=(",", ":"), default=str)
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()


def parse_config(line: str) -> tuple[BotConfig, str | None]:
    """The bot's config and ``bot_id`` from the first stdin line."""
    data = json.loads(line)
    if not isinstance(data, dict):
        raise ValueError("the first line must be a JSON object")
    bot_id = data.pop("bot_id", None)
    return BotConfig.model_validate(data), None if bot_id is None else str(bot_id)


def _read_commands(bot: Bot, loop: asyncio.AbstractEventLoop, stream: TextIO) -> None:
    for line in stream:
        line = line.strip()
        if not line:
            continue
        try:
            command = json.loads(line)
        except json.JSONDecodeError:
            logger.warning("command line is not JSON, ignored: %.80s", line)
            continue
        if isinstance(command, dict) and command.get("cmd") == "leave":
            loop.call_soon_threadsafe(bot.leave)
        elif isinstance(command, dict) and command.get("cmd") == "attention":
            level = command.get("level")
            if level in ("high", "medium", "low"):
                loop.call_soon_threadsafe(bot.set_attention, str(level))
            else:
                logger.warning("attention level %r ignored", level)
        else:
            logger.warning("unknown command ignored: %.80s", line)
    # stdin closed: the launcher is gone, so leave.
    loop.call_soon_threadsafe(bot.leave)


async def run_worker(stdin: TextIO, stdout: TextIO) -> int:
    writer = ReportWriter(stdout)
    writer(READY_REPORT)
    line = await asyncio.to_thread(stdin.readline)
    try:
        config, bot_id = parse_config(line)
    except (ValueError, ValidationError) as exc:
        writer({"type": "status", "status": "failed", "reason": f"bad config: {exc}"})
        return 2

    try:
        bot = Bot(config, on_report=writer, bot_id=bot_id)
    except PluginError as exc:
        writer({"type": "status", "status": "failed", "reason": f"bad config: {exc}"})
        return 2
    loop = asyncio.get_running_loop()
    reader = threading.Thread(
        target=_read_commands, args=(bot, loop, stdin), name="commands", daemon=True
    )
    reader.start()
    await bot.run()
    return 1 if bot.status == "failed" else 0


def main() -> None:
    from callbot.cli import quiet_libraries

    level = os.environ.get("CALLBOT_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    quiet_libraries(level)
    code = asyncio.run(run_worker(sys.stdin, sys.stdout))
    sys.stdout.flush()
    os._exit(code) if code else sys.exit(0)


if __name__ == "__main__":
    main()
