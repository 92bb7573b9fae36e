"""In-process fan-out of saved events to live subscribers (the SSE streams)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from api.record import RecordEvent

logger = logging.getLogger(__name__)

# A subscriber this far behind is dropped; it reconnects with Last-Event-ID.
QUEUE_LIMIT = 1000


class Subscription:
    """The events of one bot, or of all bots, as they are saved."""

    def __init__(self, bus: EventBus, bot_id: str | None) -> None:
        self.bot_id = bot_id
        self.queue: asyncio.Queue[RecordEvent | None] = asyncio.Queue(QUEUE_LIMIT)
        self._bus = bus

    def offer(self, event: RecordEvent) -> None:
        if self.bot_id is not None and event.bot_id != self.bot_id:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            logger.warning("event subscriber fell behind; closing its stream")
            self.close()

    def close(self) -> None:
        """End the subscription; its reader gets None."""
        self._bus.unsubscribe(self)
        while True:
            try:
                self.queue.put_nowait(None)
                return
            except asyncio.QueueFull:
                self.queue.get_nowait()

    async def get(self) -> RecordEvent | None:
        return await self.queue.get()


class EventBus:
    """Hands every saved event to the subscriptions that want it."""

    def __init__(self) -> None:
        self._subscriptions: set[Subscription] = set()

    @property
    def subscribers(self) -> int:
        return len(self._subscriptions)

    def subscribe(self, bot_id: str | None = None) -> Subscription:
        subscription = Subscription(self, bot_id)
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

    def publish(self, events: Iterable[RecordEvent]) -> None:
        for event in events:
            for subscription in list(self._subscriptions):
                subscription.offer(event)

    def close(self) -> None:
        for subscription in list(self._subscriptions):
            subscription.close()
