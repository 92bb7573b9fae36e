"""Request bodies: a size limit and strict JSON, checked before any route sees them.

Python's ``json`` reads ``NaN`` and ``Infinity``, which are not JSON; a body
carrying them is refused as unreadable (400) rather than passed on as a
number that then fails a range check with a misleading message.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The default limit: far more than any POST /bots body needs.
MAX_BODY_BYTES = 1 << 20

ErrorFactory = Callable[[int, str, str], Response]

# The methods whose bodies the routes read.
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def json_problem(body: bytes) -> str | None:
    """Why the body is not strict JSON, or None when it is."""
    try:
        json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        return "the body is not UTF-8"
    except ValueError as exc:
        return f"the body is not valid JSON: {exc}"
    return None


def _is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            kind: str = value.decode("latin-1").split(";", 1)[0].strip().lower()
            return kind == "application/json" or kind.endswith("+json")
    # FastAPI reads a body without a content type as JSON too.
    return True


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class RequestBodyMiddleware:
    """Answers 413 above ``limit`` bytes and 400 for a JSON body that is not JSON.

    Pure ASGI; requests without a body method (the SSE streams) pass untouched.
    """

    def __init__(
        self, app: ASGIApp, *, error: ErrorFactory, limit: int = MAX_BODY_BYTES
    ) -> None:
        self.app = app
        self.error = error
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return

        too_large = self.error(
            413,
            "body_too_large",
            f"the request body is larger than {self.limit} bytes",
        )
        declared = _declared_length(scope)
        if declared is not None and declared > self.limit:
            await too_large(scope, receive, send)
            return

        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                # The client went away before sending its body.
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)

        if body and _is_json(scope):
            problem = json_problem(body)
            if problem is not None:
                await self.error(400, "invalid_json", problem)(scope, receive, send)
                return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
