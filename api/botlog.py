"""A bot's log lines: each names the bot, its user and its room.

Every record also carries ``bot_id``, ``user_id`` and ``room_id`` as fields, so
one bot's story can be filtered out of a fleet's logs.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

from callbot.logtext import clip


class BotLog(logging.LoggerAdapter[logging.Logger]):
    """Starts each message with ``bot b-1 (alice, room lobby):``."""

    def __init__(
        self, logger: logging.Logger, bot_id: str, user_id: str, room_id: str
    ) -> None:
        super().__init__(
            logger, {"bot_id": bot_id, "user_id": user_id, "room_id": room_id}
        )
        # User and room come from the request body: one short, escaped line.
        self.prefix = f"bot {clip(bot_id, 64)} ({clip(user_id, 64)}, room "
        self.prefix += f"{clip(room_id, 64)}): "

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(self.extra or {}), **kwargs.get("extra", {})}
        return msg, kwargs

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        # With arguments the message is %-formatted, so the ids' own percent
        # signs are escaped; without, it is printed as it stands.
        prefix = self.prefix.replace("%", "%%") if args else self.prefix
        super().log(level, prefix + str(msg), *args, **kwargs)
