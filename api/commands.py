"""The control plane's ``callbot`` commands: ``serve`` and ``demo``.

They reach the CLI through the ``callbot.commands`` entry-point group; each
object follows :class:`callbot.cli.Command`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging

logger = logging.getLogger(__name__)


class ServeCommand:
    """``callbot serve``: the REST control plane, bots as local processes."""

    name = "serve"
    help = "run the REST control plane"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8080)
        parser.add_argument(
            "--max-bots",
            type=int,
            default=50,
            help="bots that may run at once (default: 50)",
        )
        parser.add_argument(
            "--leave-timeout",
            type=float,
            default=10.0,
            metavar="SECONDS",
            help="a leaving bot's process is killed after this (default: 10)",
        )

    def run(self, args: argparse.Namespace) -> int:
        import uvicorn

        from api.app import create_app
        from api.launcher import LocalProcessLauncher

        app = create_app(
            LocalProcessLauncher(leave_timeout=args.leave_timeout),
            max_bots=args.max_bots,
        )
        # log_config=None keeps the CLI's logging setup for uvicorn's loggers.
        uvicorn.run(app, host=args.host, port=args.port, log_config=None)
        return 0


class DemoCommand:
    """``callbot demo``: a reference server, the control plane and two bots."""

    name = "demo"
    help = "two bots in one call on a local reference server"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--duration",
            type=float,
            default=10.0,
            metavar="SECONDS",
            help="how long the bots stay in the call (default: 10)",
        )
        parser.add_argument(
            "--json",
            action="store_true",
            help="print the summary as one JSON object on the last line",
        )

    def run(self, args: argparse.Namespace) -> int:
        from api.demo import run_demo

        if args.log_level is None:
            # Keep the progress lines readable unless asked for logs.
            logging.getLogger().setLevel(logging.WARNING)
        summary = asyncio.run(run_demo(duration=args.duration, as_json=args.json))
        return 0 if summary["ok"] else 1


serve_command = ServeCommand()
demo_command = DemoCommand()
