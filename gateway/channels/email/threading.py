"""Reply-address thread tokens: reply+<token>@<reply domain> leads a reply back to its conversation.

Anyone can write to that address, so the token carries an HMAC: `<conversation id in base36>-<mac>`
where mac is the first 80 bits of HMAC-SHA256(secret, "thread:<id>") in lowercase base32. Only
lowercase letters, digits and "-": URL-safe, and it survives MTAs that lowercase local parts.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable

REPLY_PREFIX = "reply"
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def _base36(n: int) -> str:
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = _ALPHABET[r] + out
        if n == 0:
            return out


def _mac(conversation_id: int, secret: str) -> str:
    digest = hmac.new(secret.encode(), f"thread:{conversation_id}".encode(), hashlib.sha256).digest()
    return base64.b32encode(digest[:10]).decode().lower()   # 10 bytes = 16 base32 chars, no padding


def make_thread_token(conversation_id: int, secret: str) -> str:
    if conversation_id < 0 or not secret:
        raise ValueError("conversation_id must be >= 0 and secret non-empty")
    return f"{_base36(conversation_id)}-{_mac(conversation_id, secret)}"


def parse_thread_token(token: str | None, secret: str) -> int | None:
    """The conversation id of a genuine token, or None (malformed or tampered)."""
    if not token or not secret or len(token) > 64:
        return None
    id_part, _, mac = token.strip().lower().rpartition("-")
    if not id_part or not all(ch in _ALPHABET for ch in id_part):
        return None
    conversation_id = int(id_part, 36)
    if hmac.compare_digest(_mac(conversation_id, secret).encode(), mac.encode("ascii", "replace")):
        return conversation_id
    return None


def reply_address(token: str, reply_domain: str) -> str:
    return f"{REPLY_PREFIX}+{token}@{reply_domain}"


def find_thread_token(candidates: Iterable[str], reply_domain: str | None) -> str | None:
    """The token of the first reply+<token>@<reply_domain> address among bare addr-specs."""
    if not reply_domain:
        return None
    domain = reply_domain.strip().lower()
    for address in candidates:
        local, _, host = address.strip().strip("<>").rpartition("@")
        prefix, plus, token = local.partition("+")
        if plus and token and host.lower() == domain and prefix.lower() == REPLY_PREFIX:
            return token.lower()
    return None
