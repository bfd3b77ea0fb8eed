"""Meta's webhook secrets: WHATSAPP_APP_SECRET and WHATSAPP_VERIFY_TOKEN, or their sandbox stand-ins."""
from __future__ import annotations

from gateway.app.sandbox_secrets import sandbox_secret
from gateway.app.settings import Settings


def whatsapp_app_secret(settings: Settings) -> str:
    return settings.whatsapp_app_secret or sandbox_secret(settings, "whatsapp-app-secret")


def whatsapp_verify_token(settings: Settings) -> str:
    return settings.whatsapp_verify_token or sandbox_secret(settings, "whatsapp-verify")
