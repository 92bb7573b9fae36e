"""The control plane's ``callbot`` commands: ``serve`` and ``demo``.

They reach the CLI through the ``callbot.commands`` entry-point group; each
object follows :class:`callbot.cli.Command`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from api.settings import ControlPlaneSettings

logger = logging.getLogger(__name__)


def quiet_migrations(log_level: str | None) -> None:
    """Alembic's INFO lines (plugins, each upgrade step) only at DEBUG."""
    debug = (log_level or "").upper() == "DEBUG"
    logging.getLogger("alembic").setLevel(logging.DEBUG if debug else logging.WARNING)


class ServeCommand:
    """``callbot serve``: the REST control plane; bots as processes or Ray actors."""

    name = "serve"
    help = "run the REST control plane"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        # Defaults come from CALLBOT_* variables (api.settings) at run time.
        parser.add_argument("--host", default=None, help="default: 127.0.0.1")
        parser.add_argument("--port", type=int, default=None, help="default: 8080")
        parser.add_argument(
            "--max-bots",
            type=int,
            default=None,
            help="bots that may run at once (default: 50)",
        )
        parser.add_argument(
            "--leave-timeout",
            type=float,
            default=None,
            metavar="SECONDS",
            help="a leaving bot's process is killed after this (default: 10)",
        )
        parser.add_argument(
            "--ice-address",
            dest="ice_addresses",
            action="append",
            default=None,
            metavar="ADDRESS",
            help="an address the bots' ICE may use (repeatable; default: 127.0.0.1)",
        )
        parser.add_argument(
            "--launcher",
            choices=["local", "ray"],
            default=None,
            help="where bots run: local processes (default) or Ray actors",
        )
        parser.add_argument(
            "--ray-address",
            default=None,
            metavar="HOST:PORT",
            help="the Ray cluster's GCS address, for --launcher ray",
        )

    def settings(self, args: argparse.Namespace) -> ControlPlaneSettings:
        """The environment's settings with the command line's options on top."""
        from api.settings import ControlPlaneSettings

        overrides = {
            key: value
            for key in (
                "host",
                "port",
                "max_bots",
                "leave_timeout",
                "ice_addresses",
                "launcher",
                "ray_address",
            )
            if (value := getattr(args, key)) is not None
        }
        from pydantic import ValidationError

        try:
            return ControlPlaneSettings(**overrides)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}"
                for e in exc.errors()
            )
            raise SystemExit(f"callbot serve: invalid settings: {problems}") from None

    def run(self, args: argparse.Namespace) -> int:
        import uvicorn

        quiet_migrations(args.log_level)
        settings = self.settings(args)
        app = build_app(settings, log_level=args.log_level)
        logger.info(
            "control plane on %s:%d, data in %s, bots' ICE on %s, launcher %s",
            settings.host,
            settings.port,
            settings.data_dir,
            ", ".join(settings.ice_addresses),
            settings.launcher,
        )
        # log_config=None keeps the CLI's logging setup for uvicorn's loggers.
        config = uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_config=None,
            timeout_graceful_shutdown=max(1, int(settings.drain_timeout)),
        )
        _show_request_ids()
        draining_server(config, app.state.drain).run()
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
            help=(
                "print only the summary, as one JSON line, on stdout (the"
                " progress goes to stderr)"
            ),
        )

    def run(self, args: argparse.Namespace) -> int:
        # Keep the progress lines readable unless asked for logs (set before
        # the imports, which log at INFO).
        level = args.log_level or "WARNING"
        logging.getLogger().setLevel(level)
        from api.demo import failed_summary, run_demo

        try:
            summary = asyncio.run(
                run_demo(duration=args.duration, as_json=args.json, log_level=level)
            )
        except KeyboardInterrupt:
            if args.json:
                print(json.dumps(failed_summary("interrupted")), flush=True)
            return 130
        return 0 if summary["ok"] else 1


def _show_request_ids() -> None:
    """Add the request id to the format of the handlers the CLI set up."""
    for handler in logging.getLogger().handlers:
        formatter = handler.formatter
        fmt = getattr(formatter, "_fmt", None)
        if fmt and "request_id" not in fmt:
            handler.setFormatter(logging.Formatter(fmt + " [%(request_id)s]"))


def draining_server(config: Any, drain: Any) -> Any:
    """A uvicorn server that starts the app's drain on the first SIGTERM/SIGINT.

    Uvicorn waits for open connections before the app's shutdown runs; the
    drain ends the event streams at once and refuses new bots meanwhile.
    """
    import asyncio

    import uvicorn

    class _Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            if not self.should_exit:
                logger.info("signal %d: draining", sig)
                try:
                    asyncio.get_running_loop().call_soon_threadsafe(drain)
                except RuntimeError:
                    drain()
            super().handle_exit(sig, frame)

    return _Server(config)


def make_launcher(settings: ControlPlaneSettings, log_level: str | None = None) -> Any:
    """The launcher the settings name: local keeper processes or Ray actors."""
    if settings.launcher == "ray":
        from api.ray_launcher import RayLauncher

        if not settings.ray_address:
            raise SystemExit("launcher ray needs CALLBOT_RAY_ADDRESS (--ray-address)")
        return RayLauncher(
            settings.ray_address,
            namespace=settings.ray_namespace,
            leave_timeout=settings.leave_timeout,
            heartbeat_timeout=settings.heartbeat_timeout,
            log_level=log_level or "INFO",
        )
    from api.launcher import LocalProcessLauncher

    # The workers log at the level the control plane was given.
    env = {"CALLBOT_LOG_LEVEL": log_level} if log_level else None
    return LocalProcessLauncher(
        command=settings.worker_command,
        leave_timeout=settings.leave_timeout,
        env=env,
        bots_dir=settings.data_dir / "bots",
        heartbeat_timeout=settings.heartbeat_timeout,
        warm_pool=settings.warm_pool,
    )


def build_app(settings: ControlPlaneSettings, log_level: str | None = None) -> Any:
    """The control plane of ``callbot serve``: store and bots under data_dir."""
    from api.app import create_app
    from api.store import Store

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    launcher = make_launcher(settings, log_level)
    return create_app(
        launcher,
        store=Store(settings.resolved_database_url()),
        own_store=True,
        # Allow-lists, webhooks, load and body limits come from here.
        settings=settings,
        max_bots=settings.max_bots,
        ice_addresses=settings.ice_addresses,
        keep_bots_on_shutdown=settings.keep_bots_on_shutdown,
    )


class KeysCommand:
    """``callbot keys create|list|revoke``: the control plane's API keys."""

    name = "keys"
    help = "manage the control plane's API keys"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        create = actions.add_parser("create", help="make a key and print it")
        create.add_argument(
            "--name",
            default="default",
            help='who the key is for, kept with it (default: "default")',
        )
        actions.add_parser("list", help="list the keys: id, name, created, state")
        revoke = actions.add_parser("revoke", help="revoke a key: it gets 401 from now")
        revoke.add_argument("key_id", help="the key's id (k-..., from list)")

    def run(self, args: argparse.Namespace) -> int:
        quiet_migrations(args.log_level)  # before the imports: alembic logs then
        from api.keys import create_key
        from api.settings import ControlPlaneSettings
        from api.store import Store

        settings = ControlPlaneSettings()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        store = Store(settings.resolved_database_url())
        try:
            if args.action == "list":
                for key_id, name, created, revoked in store.list_keys():
                    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created))
                    state = "revoked" if revoked else "active"
                    print(f"{key_id}\t{name}\t{when}\t{state}", flush=True)
                return 0
            if args.action == "revoke":
                if not store.revoke_key(args.key_id):
                    raise SystemExit(f"callbot keys: no key with id {args.key_id}")
                logger.info("revoked API key %s", args.key_id)
                return 0
            key_id, key = create_key(store, args.name)
        finally:
            store.close()
        logger.info("created API key %s (%s)", key_id, args.name)
        # The key itself is shown only here; the store keeps its hash.
        print(key, flush=True)
        return 0


serve_command = ServeCommand()
keys_command = KeysCommand()
demo_command = DemoCommand()
