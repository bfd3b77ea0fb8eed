"""Signed tokens for web chat: visitor sessions (ours) and identity tokens (the business's).

Session token: `v1.<payload>.<signature>`, payload = base64url(JSON {"vid": visitor id, "exp": unix
seconds}), signature = base64url(HMAC-SHA256(key, "v1." + payload)) with a key derived from
GATEWAY_SECRET_KEY. Stateless: nothing is stored until the visitor writes; whoever holds the token is
that visitor (as Chatwoot's pubsub token), so it is only ever sent over the socket or in a JSON body.

Identity token, made by the business's own server for a signed-in user and handed to the widget
(`data-identity-token`), so a visitor can be linked to a known contact:

    <payload>.<signature>
    payload   = base64url(JSON {"email": ..., "phone": ..., "external_id": ..., "name": ..., "exp": ...})
    signature = hex(HMAC-SHA256(GATEWAY_CHAT_IDENTITY_SECRET, payload))

At least one of email, phone, external_id; `exp` (unix seconds) is required. base64url may be with or
without padding. Example in Python: `sign_identity(secret, {"email": "ann@example.com", "exp": ...})`.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from gateway.domain.contacts import ContactRef, ContactRefError
from gateway.domain.secret_keys import derive_key

SESSION_TTL = 30 * 24 * 3600
_SESSION_PREFIX = "v1"
_MAX_TOKEN = 2048


class TokenError(ValueError):
    """A token that cannot be used; `code` is the error frame's code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Session:
    token: str
    visitor_id: str
    expires_at: int   # unix seconds


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _session_key(secret_key: str) -> bytes:
    # Derived, so a chat token can never be replayed as any other signature made with secret_key.
    return derive_key(secret_key, "gateway webchat session v1")


def new_visitor_id() -> str:
    return "v_" + secrets.token_urlsafe(16)


def issue_session(secret_key: str, visitor_id: str | None = None, *, ttl: int = SESSION_TTL,
                  now: float | None = None) -> Session:
    """A fresh token for `visitor_id` (a new visitor when None)."""
    visitor_id = visitor_id or new_visitor_id()
    exp = int((now if now is not None else time.time()) + ttl)
    payload = _b64encode(json.dumps({"vid": visitor_id, "exp": exp}, separators=(",", ":")).encode())
    signed = f"{_SESSION_PREFIX}.{payload}"
    sig = _b64encode(hmac.new(_session_key(secret_key), signed.encode(), hashlib.sha256).digest())
    return Session(f"{signed}.{sig}", visitor_id, exp)


def verify_session(secret_key: str, token: object, *, now: float | None = None) -> Session:
    """The session a token carries; raises TokenError(invalid_token | expired_token)."""
    if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN:
        raise TokenError("invalid_token", "a session token is required")
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != _SESSION_PREFIX:
        raise TokenError("invalid_token", "malformed session token")
    expected = _b64encode(hmac.new(_session_key(secret_key), f"{parts[0]}.{parts[1]}".encode(),
                                   hashlib.sha256).digest())
    if not hmac.compare_digest(expected, parts[2]):
        raise TokenError("invalid_token", "session token signature does not match")
    try:
        claims = json.loads(_b64decode(parts[1]))
        visitor_id, exp = claims["vid"], int(claims["exp"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise TokenError("invalid_token", "malformed session token") from None
    if not isinstance(visitor_id, str) or not visitor_id:
        raise TokenError("invalid_token", "malformed session token")
    if exp <= (now if now is not None else time.time()):
        raise TokenError("expired_token", "session token expired; create a new session")
    return Session(token, visitor_id, exp)


def sign_identity(secret: str, claims: dict) -> str:
    """An identity token as the business's server makes it (for tests and Python integrations)."""
    payload = _b64encode(json.dumps(claims, separators=(",", ":")).encode())
    return f"{payload}.{hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()}"


def verify_identity(secret: str | None, token: object, *, now: float | None = None) -> ContactRef:
    """The contact an identity token names; raises TokenError(identity_* codes)."""
    if not secret:
        raise TokenError("identity_unavailable",
                         "identification is off: GATEWAY_CHAT_IDENTITY_SECRET is not set")
    if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN or token.count(".") != 1:
        raise TokenError("identity_invalid", "malformed identity token")
    payload, sig = token.split(".")
    expected = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, sig.lower()):
        raise TokenError("identity_invalid", "identity token signature does not match")
    try:
        claims = json.loads(_b64decode(payload))
        exp = int(claims["exp"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise TokenError("identity_invalid", "identity token needs a JSON payload with exp") from None
    if exp <= (now if now is not None else time.time()):
        raise TokenError("identity_expired", "identity token expired")
    fields = {k: claims[k] for k in ("email", "phone", "external_id", "name") if claims.get(k)}
    if not any(k in fields for k in ("email", "phone", "external_id")):
        raise TokenError("identity_invalid", "identity token names no email, phone or external_id")
    try:
        return ContactRef.parse(fields)
    except ContactRefError as exc:
        raise TokenError("identity_invalid", f"identity token: {exc}") from None
