"""Request ids: taken from ``X-Request-ID`` or made, echoed, and put on log records."""

from __future__ import annotations

import contextvars
import logging
import re
import secrets
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "X-Request-ID"
_VALID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

current: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)

_installed = False


def install_log_field() -> None:
    """Give every log record a ``request_id`` attribute ("-" outside requests)."""
    global _installed
    if _installed:
        return
    _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if not hasattr(record, "request_id"):
            record.request_id = current.get() or "-"
        return record

    logging.setLogRecordFactory(factory)


class RequestIdMiddleware:
    """Pure ASGI, so streaming responses (SSE) pass through untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = None
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                given = value.decode("latin-1")
                break
        request_id = (
            given if given and _VALID.fullmatch(given) else secrets.token_hex(8)
        )
        token = current.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            current.reset(token)
