"""Local PubSub with Phoenix's delivery rules, including the double subscription.

A call channel is subscribed to ``call:<room>`` twice: once by Phoenix, with
fastlane metadata (the socket, the channel's intercepted events), and once
more by the channel's own ``join/3``. phoenix_pubsub delivers once per
subscription, which gives the real server's behaviour (call-channel.md §1):

- a :class:`ServerEvent` (a plain message from the CallServer) reaches the
  channel once per subscription: pushed twice;
- an intercepted :class:`Broadcast` goes to the channel's ``handle_out`` via
  both subscriptions: pushed twice;
- a non-intercepted :class:`Broadcast` goes through the fastlane straight to
  the socket (join_ref ``null``), and reaches the channel a second time as a
  raw broadcast, which the call channel has no clause for.

Delivery never runs the subscriber: it only puts the message in its mailbox,
as sending to an Erlang process does, so a broadcast cannot re-enter a
channel that is busy broadcasting.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Broadcast:
    """An endpoint broadcast (``%Phoenix.Socket.Broadcast{}``)."""

    topic: str
    event: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class ServerEvent:
    """A plain message to channel processes, as the CallServer sends them."""

    topic: str
    event: str
    payload: dict[str, Any]


Message = Broadcast | ServerEvent


class Subscriber(Protocol):
    """A channel process as PubSub sees it."""

    @property
    def intercepts(self) -> frozenset[str]: ...

    def deliver(self, message: Message, *, duplicate: bool) -> None:
        """Put ``message`` in the mailbox; never runs handlers inline."""


FastlaneSend = Callable[[Broadcast], None]


@dataclass
class _Subscription:
    subscriber: Subscriber
    fastlane: FastlaneSend | None
    duplicate: bool


class PubSub:
    """Topic → subscriptions, delivered in subscription order.

    Args:
        duplicate_pushes: when false, subscriptions marked ``duplicate``
            deliver only raw non-intercepted broadcasts (the copy that
            crashes a call channel), so every push arrives once.
    """

    def __init__(self, *, duplicate_pushes: bool = True) -> None:
        self.duplicate_pushes = duplicate_pushes
        self._topics: dict[str, list[_Subscription]] = {}

    def subscribe(
        self,
        topic: str,
        subscriber: Subscriber,
        *,
        fastlane: FastlaneSend | None = None,
        duplicate: bool = False,
    ) -> None:
        self._topics.setdefault(topic, []).append(
            _Subscription(subscriber, fastlane, duplicate)
        )

    def unsubscribe_all(self, subscriber: Subscriber) -> None:
        """Drop every subscription of ``subscriber`` (its process ended)."""
        for topic in list(self._topics):
            subs = [s for s in self._topics[topic] if s.subscriber is not subscriber]
            if subs:
                self._topics[topic] = subs
            else:
                del self._topics[topic]

    def subscribers(self, topic: str) -> list[Subscriber]:
        """Each subscriber of ``topic`` once, in subscription order."""
        seen: list[Subscriber] = []
        for sub in self._topics.get(topic, ()):
            if not any(s is sub.subscriber for s in seen):
                seen.append(sub.subscriber)
        return seen

    def broadcast(self, message: Message, *, exclude: Subscriber | None = None) -> None:
        """Deliver to every subscription of ``message.topic``.

        ``exclude`` is ``broadcast_from``'s sender: none of its subscriptions
        receive the message.
        """
        for sub in list(self._topics.get(message.topic, ())):
            if sub.subscriber is exclude:
                continue
            raw_unintercepted = (
                isinstance(message, Broadcast)
                and message.event not in sub.subscriber.intercepts
            )
            if sub.fastlane is not None and raw_unintercepted:
                assert isinstance(message, Broadcast)
                sub.fastlane(message)
                continue
            if sub.duplicate and not self.duplicate_pushes and not raw_unintercepted:
                continue
            sub.subscriber.deliver(message, duplicate=sub.duplicate)
