"""Per-inbox credentials, encrypted at rest with a key derived from the installation's secret key.

They are written by the admin API and read only by the senders; no answer ever carries them (the
API says `has_credentials`). Changing GATEWAY_SECRET_KEY makes stored credentials unreadable: the
inbox then sends with the provider's settings and a warning is logged.
"""
from __future__ import annotations

import base64
import json

from cryptography.fernet import Fernet, InvalidToken

from gateway.domain.secret_keys import derive_key

KEY_PURPOSE = "gateway inbox credentials v1"


def _fernet(secret_key: str) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(derive_key(secret_key, KEY_PURPOSE)))


def seal(secret_key: str, credentials: dict[str, str]) -> bytes:
    return _fernet(secret_key).encrypt(json.dumps(credentials, sort_keys=True).encode())


def unseal(secret_key: str, sealed: bytes) -> dict[str, str] | None:
    """The credentials, or None when they were sealed under another secret key."""
    try:
        return json.loads(_fernet(secret_key).decrypt(bytes(sealed)))
    except (InvalidToken, ValueError):
        return None
