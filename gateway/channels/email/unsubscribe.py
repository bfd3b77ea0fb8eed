"""One-click unsubscribe links for marketing mail (RFC 8058): `/unsubscribe/<token>`.

The token is base64url(address, NUL, 12-byte MAC over the address under GATEWAY_SECRET_KEY). Links
already sent keep working: the format never changes. The page is gateway.channels.email.routes.
"""
from __future__ import annotations

import base64
import hashlib
import hmac

from gateway.app.settings import Settings

UNSUBSCRIBE_MAC_BYTES = 12


def _unsubscribe_mac(settings: Settings, address: str) -> bytes:
    return hmac.new(settings.secret_key.encode(), f"unsubscribe:{address}".encode(),
                    hashlib.sha256).digest()[:UNSUBSCRIBE_MAC_BYTES]


def unsubscribe_token(settings: Settings, address: str) -> str:
    """base64url(address, NUL, 12-byte MAC): the MAC sits at a fixed place at the end."""
    raw = address.encode() + b"\x00" + _unsubscribe_mac(settings, address)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_unsubscribe_token(settings: Settings, token: str) -> str | None:
    """The address a token was issued for, or None.

    The MAC is read by position (its last 12 bytes), never by searching for the separator: MAC
    bytes can be NUL themselves. Links already sent keep working, the format is unchanged.
    """
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        address_text = raw[:-UNSUBSCRIBE_MAC_BYTES - 1].decode()
    except (ValueError, UnicodeDecodeError):
        return None
    if len(raw) < UNSUBSCRIBE_MAC_BYTES + 2 or raw[-UNSUBSCRIBE_MAC_BYTES - 1] != 0:
        return None
    mac = raw[-UNSUBSCRIBE_MAC_BYTES:]
    return address_text if hmac.compare_digest(mac, _unsubscribe_mac(settings, address_text)) else None


def unsubscribe_url(settings: Settings, address: str) -> str:
    return f"{settings.base_url}/unsubscribe/{unsubscribe_token(settings, address)}"
