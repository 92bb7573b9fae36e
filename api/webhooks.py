"""Webhook deliveries: signed, at least once, retried with exponential backoff.

Every event is queued in the same transaction that saves it (see
:meth:`api.store.Store.save`), so a crash between saving and sending loses
nothing; the sender below works through the queue.

A request carries the event as JSON (the same bytes on every attempt) and::

    Callbot-Event-Id: <event_id, stable across attempts>
    Callbot-Timestamp: <unix seconds of this attempt>
    Callbot-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx

from api.record import RecordEvent
from api.store import Delivery, Store

logger = logging.getLogger(__name__)

Clock = Callable[[], float]

SIGNATURE_HEADER = "Callbot-Signature"
TIMESTAMP_HEADER = "Callbot-Timestamp"
EVENT_ID_HEADER = "Callbot-Event-Id"


def event_body(event: RecordEvent) -> bytes:
    """The JSON body of an event: the same bytes on every attempt."""
    payload: dict[str, Any] = {
        "event_id": event.event_id,
        "seq": event.seq,
        "bot_id": event.bot_id,
        "type": event.type,
        "data": event.data,
        "ts": event.ts,
    }
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """``v1=`` and the hex HMAC-SHA256 of ``timestamp.body``."""
    message = str(timestamp).encode() + b"." + body
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def verify(
    secret: str,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    now: float,
    tolerance: float = 300.0,
) -> bool:
    """What a receiver checks: the signature, and a timestamp close to now."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs(now - ts) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, ts, body), signature)


def backoff(attempts: int, base: float, cap: float) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones."""
    return float(min(cap, base * 2 ** max(0, attempts - 1)))


class WebhookSender:
    """Sends the queued deliveries until each succeeds or its window closes."""

    def __init__(
        self,
        store: Store,
        secret: str,
        *,
        retry_window: float = 86400.0,
        base_delay: float = 1.0,
        max_delay: float = 3600.0,
        timeout: float = 10.0,
        concurrency: int = 8,
        clock: Clock = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._store = store
        self._secret = secret
        self._window = retry_window
        self._base = base_delay
        self._cap = max_delay
        self._clock = clock
        self._limit = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        # Webhook receivers are reached directly, never through a proxy.
        self._client = httpx.AsyncClient(
            timeout=timeout, transport=transport, trust_env=False
        )
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="webhooks")

    def notify(self) -> None:
        """New deliveries were queued."""
        self._wake.set()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._client.aclose()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            due = self._store.due_deliveries(self._clock())
            if due:
                await asyncio.gather(*(self._send(d) for d in due))
                continue
            following = self._store.next_delivery_at()
            wait = 60.0 if following is None else max(0.0, following - self._clock())
            # asyncio.timeout, not wait_for: in 3.11 wait_for can swallow a
            # cancel that arrives together with the wake-up.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(wait, 60.0)):
                    await self._wake.wait()

    async def _send(self, delivery: Delivery) -> None:
        body = event_body(delivery.event)
        async with self._limit:
            timestamp = int(self._clock())
            headers = {
                "Content-Type": "application/json",
                EVENT_ID_HEADER: delivery.event.event_id,
                TIMESTAMP_HEADER: str(timestamp),
                SIGNATURE_HEADER: sign(self._secret, timestamp, body),
            }
            status: int | None = None
            error: str | None = None
            try:
                response = await self._client.post(
                    delivery.url, content=body, headers=headers
                )
                status = response.status_code
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"[:2000]

        now = self._clock()
        delivered = status is not None and 200 <= status < 300
        next_at: float | None = None
        if not delivered:
            next_at = now + backoff(delivery.attempts + 1, self._base, self._cap)
            if next_at > delivery.created_at + self._window:
                logger.warning(
                    "bot %s: giving up webhook %s of event %s (%s) after %d attempts",
                    delivery.event.bot_id,
                    delivery.url,
                    delivery.event.event_id,
                    delivery.event.type,
                    delivery.attempts + 1,
                    extra={"bot_id": delivery.event.bot_id},
                )
                next_at = None
            else:
                logger.info(
                    "bot %s: webhook %s answered %s; retrying in %.1f s",
                    delivery.event.bot_id,
                    delivery.url,
                    status if status is not None else error,
                    next_at - now,
                    extra={"bot_id": delivery.event.bot_id},
                )
        self._store.record_attempt(
            delivery.id,
            now=now,
            status=status,
            error=error,
            delivered=delivered,
            next_attempt_at=next_at,
        )
