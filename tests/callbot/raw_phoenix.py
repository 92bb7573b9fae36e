"""A raw V2 Phoenix client for server tests: exact frames in, exact frames out."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

Frame = list[Any]


class RawClient:
    """One websocket; every frame the server sends is kept, in order."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[Frame] = []
        self._refs = itertools.count(1)
        self._arrived = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def open(cls, url: str) -> RawClient:
        ws = await connect(f"{url}/websocket?vsn=2.0.0", compression=None)
        return cls(ws)

    async def close(self) -> None:
        await self.ws.close()
        await self._reader

    def next_ref(self) -> str:
        return str(next(self._refs))

    async def send(
        self,
        join_ref: str | None,
        ref: str | None,
        topic: str,
        event: str,
        payload: Any,
    ) -> None:
        await self.ws.send(json.dumps([join_ref, ref, topic, event, payload]))

    async def join(self, topic: str, params: dict[str, Any]) -> tuple[str, Frame]:
        """``phx_join`` with ref == join_ref; the join_ref and the reply frame."""
        ref = self.next_ref()
        await self.send(ref, ref, topic, "phx_join", params)
        reply = await self.reply(ref)
        return ref, reply

    async def push(self, join_ref: str, topic: str, event: str, payload: Any) -> str:
        ref = self.next_ref()
        await self.send(join_ref, ref, topic, event, payload)
        return ref

    async def request(
        self, join_ref: str, topic: str, event: str, payload: Any
    ) -> dict[str, Any]:
        """A push and its reply's payload ``{status, response}``."""
        ref = await self.push(join_ref, topic, event, payload)
        reply = await self.reply(ref)
        result: dict[str, Any] = reply[4]
        return result

    async def reply(self, ref: str, timeout: float = 5.0) -> Frame:
        return await self.take(
            lambda f: f[3] == "phx_reply" and f[1] == ref, timeout=timeout
        )

    async def take(self, match: Callable[[Frame], bool], timeout: float = 5.0) -> Frame:
        """Remove and return the first frame that matches, waiting for it."""
        async with asyncio.timeout(timeout):
            while True:
                for i, frame in enumerate(self.frames):
                    if match(frame):
                        return self.frames.pop(i)
                self._arrived.clear()
                await self._arrived.wait()

    async def barrier(self, join_ref: str, topic: str) -> None:
        """Two ``get_participants`` round trips through the channel's mailbox.

        Everything broadcast before the first reply is in the mailbox by
        then; the second reply comes after it has been pushed.
        """
        for _ in range(2):
            await self.request(join_ref, topic, "get_participants", {})

    def drain(self, event: str | None = None) -> list[Frame]:
        """Remove and return the buffered frames (of one event, if given)."""
        taken = [f for f in self.frames if event is None or f[3] == event]
        self.frames = [f for f in self.frames if f not in taken]
        return taken

    async def _read(self) -> None:
        async for raw in self.ws:
            self.frames.append(json.loads(raw))
            self._arrived.set()
