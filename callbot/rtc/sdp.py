"""SDP and candidate rewriting for what the bot sends.

The real server's ICE library (ex_ice 0.13) parses a candidate foundation as an
integer and crashes the endpoint on aiortc's 32-character hexadecimal ones.
Every outgoing foundation, in the offer's ``a=candidate`` lines and in trickled
candidates, is therefore replaced by a short decimal string. The mapping is a
hash, so the same original foundation gives the same number on every run and
in every process, and distinct foundations stay distinct in practice.
"""

from __future__ import annotations

import hashlib

_CANDIDATE_PREFIX = "candidate:"
_SDP_CANDIDATE_PREFIX = "a=candidate:"
# Foundations up to this many digits are taken as they are.
_MAX_DIGITS = 10


def decimal_foundation(foundation: str) -> str:
    """A purely decimal foundation for ``foundation``, stable across runs."""
    if foundation.isdigit() and len(foundation) <= _MAX_DIGITS:
        return foundation
    digest = hashlib.sha256(foundation.encode("utf-8")).digest()
    # 31 bits: a positive value in any integer type the other side may use.
    return str(int.from_bytes(digest[:4], "big") & 0x7FFFFFFF)


def rewrite_candidate(candidate: str) -> str:
    """Rewrite the foundation of ``candidate:<foundation> ...`` (or without prefix).

    The empty end-of-candidates string and anything not shaped like a candidate
    pass unchanged.
    """
    prefix = ""
    body = candidate
    if body.startswith(_CANDIDATE_PREFIX):
        prefix, body = _CANDIDATE_PREFIX, body[len(_CANDIDATE_PREFIX) :]
    foundation, sep, rest = body.partition(" ")
    if not foundation or not sep:
        return candidate
    return f"{prefix}{decimal_foundation(foundation)} {rest}"


def rewrite_sdp_foundations(sdp: str) -> str:
    """Rewrite the foundation of every ``a=candidate`` line of ``sdp``."""
    newline = "\r\n" if "\r\n" in sdp else "\n"
    lines = sdp.split(newline)
    for i, line in enumerate(lines):
        if line.startswith(_SDP_CANDIDATE_PREFIX):
            lines[i] = "a=" + rewrite_candidate(line[2:])
    return newline.join(lines)


def media_mids(sdp: str) -> list[str | None]:
    """The ``a=mid`` of each m-line of ``sdp``, in m-line order."""
    mids: list[str | None] = []
    for raw in sdp.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            mids.append(None)
        elif line.startswith("a=mid:") and mids and mids[-1] is None:
            mids[-1] = line[len("a=mid:") :]
    return mids


def candidate_foundations(sdp: str) -> list[str]:
    """The foundation of every ``a=candidate`` line of ``sdp``."""
    result = []
    for raw in sdp.splitlines():
        line = raw.strip()
        if line.startswith(_SDP_CANDIDATE_PREFIX):
            result.append(line[len(_SDP_CANDIDATE_PREFIX) :].split(" ", 1)[0])
    return result
