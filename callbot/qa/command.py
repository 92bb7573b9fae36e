"""``callbot qa``: join a call as a QA bot, measure it, exit 0 on pass, 1 on fail.

The QA bot runs the ``qa`` plugin (found by name through the
``callbot.plugins`` entry points, like any plugin) for ``--duration``
seconds, then prints the checks; the plugin writes ``report.json``,
``report.html`` and ``junit.xml`` to ``--out``. Exit code 2: no report
(the bot could not join, or the ``qa`` plugin is not installed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import uuid
from pathlib import Path
from typing import Any

from callbot.bot.bot import Bot
from callbot.bot.config import BotConfig, PluginSpec
from callbot.bot.plugin import PluginError
from callbot.qa.verdict import figure, title

logger = logging.getLogger(__name__)

PUBLISH = {
    "none": (False, False),
    "audio": (False, True),
    "video": (True, False),
    "both": (True, True),
}


class QaCommand:
    """``callbot qa --server URL --room R --duration S``."""

    name = "qa"
    help = "measure a call's media and give a pass/fail verdict"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--server",
            required=True,
            metavar="URL",
            help="the call server's socket, ws://HOST:PORT/socket",
        )
        parser.add_argument(
            "--room", required=True, help="the room whose call to measure"
        )
        parser.add_argument(
            "--duration",
            type=float,
            default=30.0,
            metavar="SECONDS",
            help="how long the QA bot stays in the call and measures",
        )
        parser.add_argument(
            "--thresholds",
            default=None,
            metavar="FILE",
            help="JSON thresholds; missing keys keep their defaults (see the README)",
        )
        parser.add_argument(
            "--out",
            default="qa-report",
            metavar="DIR",
            help="where report.json, report.html and junit.xml go",
        )
        parser.add_argument(
            "--user-id", default=None, help="the QA bot's user id (default: qa-RANDOM)"
        )
        parser.add_argument(
            "--token", default=None, help="the socket's token connect parameter"
        )
        parser.add_argument(
            "--publish",
            choices=sorted(PUBLISH),
            default="audio",
            help=(
                "what the QA bot publishes (default: audio, the tone, so that"
                " RTCP gives a round-trip time)"
            ),
        )
        parser.add_argument(
            "--ice-address",
            dest="ice_addresses",
            action="append",
            default=None,
            metavar="ADDRESS",
            help="an address ICE may use (repeatable; default: 127.0.0.1)",
        )

    def run(self, args: argparse.Namespace) -> int:
        from callbot.cli import check_server_url
        from callbot.errors import UsageError

        try:
            check_server_url(args.server)
        except UsageError as exc:
            print(f"callbot qa: {exc}", file=sys.stderr)
            return 2
        return asyncio.run(self.measure(args))

    async def measure(self, args: argparse.Namespace) -> int:
        """Run the QA bot; the exit code."""
        video, audio = PUBLISH[args.publish]
        plugin_config: dict[str, Any] = {"out": args.out}
        if args.thresholds:
            plugin_config["thresholds_file"] = args.thresholds
        config = BotConfig(
            server_url=args.server,
            room_id=args.room,
            user_id=args.user_id or f"qa-{uuid.uuid4().hex[:6]}",
            display_name="QA",
            token=args.token,
            duration=args.duration,
            ice_addresses=args.ice_addresses or ["127.0.0.1"],
            video=video,
            audio=audio,
            plugins=[PluginSpec(name="qa", config=plugin_config, essential=True)],
        )
        try:
            bot = Bot(config)
        except PluginError as exc:
            print(f"callbot qa: {exc}", file=sys.stderr)
            return 2
        await bot.run()
        path = Path(args.out) / "report.json"
        if not path.exists():
            print(f"qa: no report ({bot.status}: {bot.reason})")
            return 2
        report = json.loads(path.read_text())
        for check in report.get("checks", []):
            print(describe(check))
        passed = bool(report.get("passed"))
        print(f"qa: {'PASS' if passed else 'FAIL'} - reports in {args.out}")
        return 0 if passed else 1


def describe(check: dict[str, Any]) -> str:
    """One line for one check of report.json."""
    if check["passed"] is None:
        return f"  n/a  {title(check)}: not measured"
    word = "ok  " if check["passed"] else "FAIL"
    return f"  {word} {figure(check)}"


qa_command = QaCommand()
