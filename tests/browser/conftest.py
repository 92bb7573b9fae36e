"""The real Sensocto browser client in headless Chromium, as a pytest fixture.

``browser`` starts ``node driver.mjs --control`` (one Chromium, one page per
user) and talks to it in JSON lines. ``make browser-deps`` (part of
``make test``) installs the pinned npm packages and builds the page bundle.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
CHROMIUM = os.environ.get("CALLBOT_CHROMIUM", "/usr/bin/chromium")
STATE_LINE_LIMIT = 64 * 1024 * 1024


class DriverError(RuntimeError):
    """The driver refused a command or went away."""


class BrowserPeers:
    """Pages of one headless Chromium, each running the browser client."""

    def __init__(self, process: asyncio.subprocess.Process, log: Path) -> None:
        self._process = process
        self._log = log
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.create_task(self._read())
        self.ready: asyncio.Future[dict[str, Any]] = (
            asyncio.get_running_loop().create_future()
        )

    async def _read(self) -> None:
        assert self._process.stdout is not None
        reason = "driver exited"
        try:
            while line := await self._process.stdout.readline():
                message = json.loads(line)
                if message.get("ready") and not self.ready.done():
                    self.ready.set_result(message)
                    continue
                future = self._waiting.pop(message.get("id"), None)
                if future is not None and not future.done():
                    future.set_result(message)
        except (ValueError, OSError) as exc:
            reason = f"reading the driver failed: {exc}"
            raise
        finally:
            error = DriverError(f"{reason}; its log:\n{self.log_text()}")
            if not self.ready.done():
                self.ready.set_exception(error)
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(error)
            self._waiting.clear()

    def log_text(self) -> str:
        return self._log.read_text(errors="replace")[-4000:]

    async def command(
        self, cmd: str, reply_timeout: float = 30.0, **args: Any
    ) -> dict[str, Any]:
        """Send one command and return the driver's answer within ``reply_timeout``."""
        assert self._process.stdin is not None
        ident = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = (
            asyncio.get_running_loop().create_future()
        )
        self._waiting[ident] = future
        payload = json.dumps({"id": ident, "cmd": cmd, **args})
        self._process.stdin.write(payload.encode() + b"\n")
        await self._process.stdin.drain()
        answer = await asyncio.wait_for(future, reply_timeout)
        if not answer.get("ok"):
            raise DriverError(f"{cmd} failed: {answer.get('error')}")
        return answer

    async def open(
        self,
        user: str,
        *,
        socket_url: str,
        room: str,
        name: str | None = None,
        audio: bool = True,
        video: bool = True,
    ) -> None:
        """Open a page that joins the call as ``user`` and publishes its tracks."""
        query = [] if audio else ["audio=0"]
        query += [] if video else ["video=0"]
        await self.command(
            "open", user=user, socket=socket_url, room=room, name=name, query=query
        )

    async def state(self, user: str) -> dict[str, Any]:
        """``window.peerState`` of the user's page, with its errors."""
        answer = await self.command("state", user=user)
        state: dict[str, Any] = answer["state"]
        state["errors"] = answer["errors"] + [
            {"where": "pageerror", "msg": m} for m in answer["pageErrors"]
        ]
        state["console"] = answer["console"]
        return state

    async def wait(self, user: str, until: str, timeout: float) -> bool:
        """Whether the JS expression became truthy on the page in time."""
        answer = await self.command(
            "wait",
            reply_timeout=timeout + 10.0,
            user=user,
            until=until,
            timeout=timeout,
        )
        return bool(answer["met"])

    async def leave(self, user: str) -> None:
        """The page leaves the call like Sensocto's browser does."""
        await self.command("leave", user=user)

    async def close(self, user: str) -> None:
        await self.command("close", user=user)

    async def stop(self) -> None:
        if self._process.returncode is None and self._process.stdin is not None:
            self._process.stdin.write(b'{"cmd": "quit"}\n')
            self._process.stdin.close()
            try:
                await asyncio.wait_for(self._process.wait(), 15.0)
            except TimeoutError:
                self._process.kill()
                await self._process.wait()
        await self._reader


def _check_installed() -> None:
    missing = []
    if shutil.which("node") is None:
        missing.append("node")
    if not Path(CHROMIUM).exists():
        missing.append(CHROMIUM)
    if not (HERE / "node_modules" / "playwright-core").is_dir():
        missing.append("tests/browser/node_modules")
    bundle = HERE / "dist" / "client.bundle.js"
    if not bundle.is_file():
        missing.append("tests/browser/dist/client.bundle.js")
    elif bundle.stat().st_mtime < (HERE / "page" / "client.js").stat().st_mtime:
        missing.append("a page bundle built from the current page/client.js")
    if missing:
        pytest.fail(
            "browser tests need " + ", ".join(missing) + ": run `make browser-deps`",
            pytrace=False,
        )


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[BrowserPeers]:
    """One headless Chromium driving the real browser client, one page per user."""
    _check_installed()
    log = tmp_path / "driver.log"
    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            "node",
            str(HERE / "driver.mjs"),
            "--control",
            cwd=HERE,
            # A page's state (every media event with its SDP) is one line.
            limit=STATE_LINE_LIMIT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )
    peers = BrowserPeers(process, log)
    try:
        await asyncio.wait_for(peers.ready, 30.0)
        yield peers
    finally:
        await peers.stop()
