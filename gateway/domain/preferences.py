"""Preference-page links: a signed, expiring token per contact, `<contact id>.<expires>.<mac>`.

The MAC is HMAC-SHA256 (first 18 bytes, base64url) under a key derived from GATEWAY_SECRET_KEY for
this purpose only. The page itself is gateway.http.preferences; journeys put the link in templates
(`{preferences_url}`) and in marketing emails.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import time

from gateway.domain.secret_keys import derive_key


def _key(secret_key: str) -> bytes:
    return derive_key(secret_key, "gateway preferences link v1")


def _sig(secret_key: str, payload: str) -> str:
    mac = hmac.new(_key(secret_key), payload.encode(), hashlib.sha256).digest()[:18]
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def make_token(secret_key: str, contact_id: int, expires: int) -> str:
    payload = f"{contact_id}.{expires}"
    return f"{payload}.{_sig(secret_key, payload)}"


def read_token(secret_key: str, token: str, now: float | None = None) -> int | None:
    """The contact id of a valid, unexpired token, else None."""
    parts = token.split(".")
    if len(parts) != 3 or not all(p.isascii() and p.isdigit() and len(p) < 20 for p in parts[:2]):
        return None
    if not hmac.compare_digest(_sig(secret_key, f"{parts[0]}.{parts[1]}"), parts[2]):
        return None
    if int(parts[1]) < (now if now is not None else time.time()):
        return None
    return int(parts[0])


def link_for(settings, contact_id: int) -> dict:
    """{"url", "expires_at"} of a fresh preference-page link for the contact."""
    expires = int(time.time() + settings.preferences_link_hours * 3600)
    return {"url": f"{settings.base_url}/preferences/{make_token(settings.secret_key, contact_id, expires)}",
            "expires_at": expires}


