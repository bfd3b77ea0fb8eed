"""The inbound email webhooks' key: GATEWAY_EMAIL_WEBHOOK_KEY, or its sandbox stand-in."""
from __future__ import annotations

from gateway.app.sandbox_secrets import sandbox_secret
from gateway.app.settings import Settings


def email_webhook_key(settings: Settings) -> str:
    return settings.email_webhook_key or sandbox_secret(settings, "email-webhook")
