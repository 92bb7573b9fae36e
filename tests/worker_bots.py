"""Bots in their own processes for integration tests, read through their reports.

Each :class:`WorkerBot` runs ``python -m callbot.bot.worker`` exactly as the
control plane does and keeps every JSON report it writes, so a test can wait
for what a user would see: a status, an event, frames of a remote track.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

WORKER = [sys.executable, "-m", "callbot.bot.worker"]


class WorkerBot:
    """One bot process and the reports it wrote."""

    def __init__(self, server_url: str, room_id: str, user_id: str, **config: Any):
        self.config: dict[str, Any] = {
            "server_url": server_url,
            "room_id": room_id,
            "user_id": user_id,
            "bot_id": user_id,
            **config,
        }
        self.user_id = user_id
        self.reports: list[dict[str, Any]] = []
        self.stderr: list[str] = []
        self.process: asyncio.subprocess.Process | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._changed = asyncio.Event()

    async def start(self) -> WorkerBot:
        env = {
            **os.environ,
            "CALLBOT_LOG_LEVEL": os.environ.get("CALLBOT_LOG_LEVEL", "INFO"),
        }
        self.process = await asyncio.create_subprocess_exec(
            *WORKER,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        await self._send(self.config)
        self._tasks = [
            asyncio.create_task(self._read_reports()),
            asyncio.create_task(self._read_stderr()),
        ]
        return self

    async def _send(self, message: dict[str, Any]) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write((json.dumps(message) + "\n").encode())
        with contextlib.suppress(ConnectionError):
            await self.process.stdin.drain()

    async def _read_reports(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        async for line in self.process.stdout:
            self.reports.append(json.loads(line))
            self._changed.set()

    async def _read_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        async for line in self.process.stderr:
            self.stderr.append(line.decode(errors="replace").rstrip())

    # -- what the reports say

    @property
    def status(self) -> str | None:
        statuses = [r["status"] for r in self.reports if r.get("type") == "status"]
        return statuses[-1] if statuses else None

    @property
    def stats(self) -> dict[str, Any]:
        for report in reversed(self.reports):
            if report.get("type") == "stats":
                return report
        return {}

    def events(self, name: str) -> list[dict[str, Any]]:
        return [
            r
            for r in self.reports
            if r.get("type") == "event" and r.get("event") == name
        ]

    def inbound(self, kind: str, from_user_id: str) -> list[dict[str, Any]]:
        """The inbound tracks of one kind from one user, newest last."""
        return [
            t
            for t in self.stats.get("tracks", [])
            if t.get("direction") == "inbound"
            and t.get("kind") == kind
            and t.get("from_user_id") == from_user_id
        ]

    def video_frames(self, from_user_id: str, *, live: bool = True) -> int:
        return sum(
            t.get("frames", 0)
            for t in self.inbound("video", from_user_id)
            if not (live and t.get("ended"))
        )

    def audio_seconds(self, from_user_id: str, *, live: bool = True) -> float:
        return sum(
            t.get("seconds", 0.0)
            for t in self.inbound("audio", from_user_id)
            if not (live and t.get("ended"))
        )

    async def wait_for(
        self, condition: Callable[[], bool], timeout: float, what: str = ""
    ) -> float:
        """Seconds until ``condition`` held; fails the test at ``timeout``."""
        start = time.monotonic()
        while not condition():
            if self.process is not None and self.process.returncode is not None:
                if condition():
                    break
                raise AssertionError(
                    f"{self.user_id} exited ({self.process.returncode}) while waiting "
                    f"for {what}; last log lines:\n" + "\n".join(self.stderr[-15:])
                )
            remaining = timeout - (time.monotonic() - start)
            if remaining <= 0:
                raise AssertionError(
                    f"{self.user_id}: no {what} within {timeout} s; status "
                    f"{self.status}; tracks {self.stats.get('tracks')}; last log "
                    "lines:\n" + "\n".join(self.stderr[-15:])
                )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.5))
        return time.monotonic() - start

    # -- control

    async def leave(self, timeout: float = 10.0) -> int:
        await self._send({"cmd": "leave"})
        assert self.process is not None
        code = await asyncio.wait_for(self.process.wait(), timeout)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        return code

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def start_bots(
    server_url: str, room_id: str, *user_ids: str, **config: Any
) -> list[WorkerBot]:
    return [await WorkerBot(server_url, room_id, u, **config).start() for u in user_ids]


async def stop_bots(bots: list[WorkerBot]) -> None:
    for bot in bots:
        if bot.process is not None and bot.process.returncode is None:
            try:
                await bot.leave(5.0)
            except (TimeoutError, ConnectionError, AssertionError):
                await bot.kill()
