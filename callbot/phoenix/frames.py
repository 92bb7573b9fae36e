"""Phoenix Channels V2 JSON framing: ``[join_ref, ref, topic, event, payload]``.

Shared by the client (:mod:`callbot.phoenix.protocol`) and the reference
server. It holds no protocol behaviour, only the wire shape.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from callbot.errors import FrameError, FrameTooDeep

PHOENIX_TOPIC = "phoenix"

# Events with a fixed meaning in the Phoenix protocol.
PHX_JOIN = "phx_join"
PHX_LEAVE = "phx_leave"
PHX_REPLY = "phx_reply"
PHX_ERROR = "phx_error"
PHX_CLOSE = "phx_close"
HEARTBEAT = "heartbeat"


@dataclass(frozen=True, slots=True)
class Message:
    """One V2 frame."""

    join_ref: str | None
    ref: str | None
    topic: str
    event: str
    payload: Any

    def encode(self) -> str:
        """Serialise as a V2 JSON text frame."""
        return json.dumps(
            [self.join_ref, self.ref, self.topic, self.event, self.payload],
            separators=(",", ":"),
        )


def decode(text: str | bytes) -> Message:
    """Parse one V2 JSON text frame.

    Raises:
        FrameError: the frame is not JSON, not an array of at least five
            elements, or its refs, topic or event have the wrong types.
        FrameTooDeep: the JSON nests deeper than Python's decoder goes.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FrameError(f"frame is not UTF-8: {exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FrameError(f"frame is not JSON: {exc.msg}") from exc
    except RecursionError as exc:
        raise FrameTooDeep("frame nests JSON too deeply to decode") from exc
    if not isinstance(data, list) or len(data) < 5:
        raise FrameError("frame is not an array of five elements")
    join_ref, ref, topic, event, payload = data[:5]
    for name, value in (("join_ref", join_ref), ("ref", ref)):
        if value is not None and not isinstance(value, str):
            raise FrameError(f"{name} must be a string or null, got {value!r}")
    if not isinstance(topic, str) or not isinstance(event, str):
        raise FrameError("topic and event must be strings")
    return Message(join_ref, ref, topic, event, payload)
