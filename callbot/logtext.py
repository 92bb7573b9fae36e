"""Untrusted text on its way into a log line: escaped, one line, short, not repeated.

Whatever a server or a peer sends (user ids, frames, reasons, validation
errors) may be megabytes long or hold NUL bytes and line breaks. :func:`clip`
makes one safe, bounded piece of a log line from it; :class:`RepeatLimiter`
lets the first of a run of identical warnings through and counts the rest.
"""

from __future__ import annotations

from pydantic import ValidationError

LIMIT = 200

# C0 controls, DEL, C1 controls and the Unicode line breaks, written as escapes.
_ESCAPES = {code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0))} | {
    0x2028: "\\u2028",
    0x2029: "\\u2029",
    0x0A: "\\n",
    0x0D: "\\r",
    0x09: "\\t",
}


def clip(value: object, limit: int = LIMIT) -> str:
    """``value`` as at most ``limit`` characters of one escaped line."""
    if isinstance(value, bytes | bytearray):
        text = bytes(value[: limit + 1]).decode("utf-8", "replace")
        total = len(value)
    else:
        text = value if isinstance(value, str) else str(value)
        total = len(text)
    head = text[:limit].translate(_ESCAPES)
    if total > limit:
        return f"{head}…(+{total - limit} chars)"
    return head


def validation_summary(exc: ValidationError, limit: int = LIMIT) -> str:
    """A pydantic error as one short line: ``field: message; ...``."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in error.get("loc", ())) or "value"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return clip("; ".join(parts), limit)


class RepeatLimiter:
    """Lets one warning per key through every ``interval`` seconds (sans-I/O)."""

    def __init__(self, interval: float = 10.0, max_keys: int = 256) -> None:
        self.interval = interval
        self.max_keys = max_keys
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def allow(self, key: str, now: float) -> int | None:
        """None to stay silent; else how many repeats were held back before it."""
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return None
        if last is None and len(self._last) >= self.max_keys:
            # Forget the oldest key so that hostile input cannot grow the table.
            oldest = min(self._last, key=self._last.__getitem__)
            del self._last[oldest]
            self._suppressed.pop(oldest, None)
        self._last[key] = now
        return self._suppressed.pop(key, 0)
