"""API keys: random tokens shown once, stored only as their SHA-256 hash.

The keys are 256-bit random tokens, so a plain SHA-256 (not a slow password
hash) is enough to make a stolen database useless for calling the API.
"""

from __future__ import annotations

import hashlib
import secrets
import time

from api.store import Store

KEY_PREFIX = "cb_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(store: Store, name: str, *, now: float | None = None) -> tuple[str, str]:
    """Make and store a key; returns (key id, key). The key is not kept."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    key_id = "k-" + secrets.token_hex(4)
    store.add_key(key_id, name, hash_key(key), time.time() if now is None else now)
    return key_id, key


def check_key(store: Store, key: str) -> str | None:
    """The id of the key, or None when it is unknown or revoked."""
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    return store.key_by_hash(hash_key(key))
