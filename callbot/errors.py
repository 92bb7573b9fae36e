"""The one error hierarchy of callbot.

Server reasons are kept as the exact strings the server sends
(``"not_in_call"``, ``"call_full"``), in :attr:`ReplyError.reason`.
"""

from __future__ import annotations

from typing import Any


class CallbotError(Exception):
    """Base class of every error callbot raises on purpose."""


class FrameError(CallbotError):
    """A Phoenix frame could not be parsed."""


class FrameTooDeep(FrameError):
    """A frame nests JSON deeper than the decoder goes; only that frame is lost."""


class ChannelError(CallbotError):
    """A channel operation failed (closed, errored, not joined)."""


class ReplyError(ChannelError):
    """The server answered a push with ``status: "error"``."""

    def __init__(self, topic: str, event: str, response: Any) -> None:
        self.topic = topic
        self.event = event
        self.response = response
        reason = response.get("reason") if isinstance(response, dict) else None
        self.reason: str | None = reason if isinstance(reason, str) else None
        super().__init__(f"{event} on {topic} refused: {self.reason or response!r}")


class PushTimeout(ChannelError):
    """No reply to a push arrived before its timeout."""

    def __init__(self, topic: str, event: str, timeout: float) -> None:
        self.topic = topic
        self.event = event
        self.timeout = timeout
        super().__init__(f"no reply to {event} on {topic} within {timeout:g} s")


class SocketClosed(CallbotError):
    """The socket is closed or was lost while waiting."""


class MediaEventError(CallbotError):
    """A media event could not be decoded or used."""


class NegotiationError(CallbotError):
    """The WebRTC negotiation reached a state it cannot continue from."""


class SensorDataError(CallbotError):
    """A measurement, a delta-encoded blob or a recorded file is unusable."""


class UsageError(CallbotError):
    """A command line option that cannot be used; the command exits 2."""
