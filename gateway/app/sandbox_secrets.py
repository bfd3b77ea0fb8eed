"""Stable sandbox stand-ins for webhook secrets, when a provider is not configured.

In sandbox mode (no credentials) webhooks are still verified: against a secret derived from the
installation's secret key, which `gateway simulate` derives the same way. So a newcomer can post
signed test webhooks, and nobody else can. Each channel package says which of its secrets falls
back to which stand-in (gateway/channels/<name>/secrets.py).
"""
from __future__ import annotations

from gateway.app.settings import Settings
from gateway.domain.secret_keys import derive_key


def sandbox_secret(settings: Settings, purpose: str) -> str:
    """The stand-in for the secret named `purpose`, derived from GATEWAY_SECRET_KEY."""
    return "sandbox-" + derive_key(settings.secret_key, purpose).hex()[:32]
