"""Twilio's webhook signing secret: TWILIO_AUTH_TOKEN, or its sandbox stand-in (gateway.app.sandbox_secrets)."""
from __future__ import annotations

from gateway.app.sandbox_secrets import sandbox_secret
from gateway.app.settings import Settings


def twilio_webhook_token(settings: Settings) -> str:
    return settings.twilio_auth_token or sandbox_secret(settings, "twilio")
