"""Keys derived from GATEWAY_SECRET_KEY: one per purpose, derived here and nowhere else.

Each use (chat sessions, media links, preference links, email thread tokens, sandbox webhook
secrets) signs with its own key, so a signature made for one use never verifies for another.
The purpose strings are part of the stored and sent tokens' validity: changing one invalidates them.
"""
from __future__ import annotations

import hashlib
import hmac


def derive_key(secret_key: str, purpose: str) -> bytes:
    """HMAC-SHA256(secret_key, purpose): 32 bytes for that purpose only."""
    return hmac.new(secret_key.encode(), purpose.encode(), hashlib.sha256).digest()
