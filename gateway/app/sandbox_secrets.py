"""Webhook secrets, with stable sandbox stand-ins when a provider is not configured.

In sandbox mode (no credentials) webhooks are still verified: against a secret derived from the
installation's secret key, which `gateway simulate` derives the same way. So a newcomer can post
signed test webhooks, and nobody else can.
"""
from __future__ import annotations

from gateway.domain.secret_keys import derive_key
from gateway.app.settings import Settings


def _derived(settings: Settings, purpose: str) -> str:
    return "sandbox-" + derive_key(settings.secret_key, purpose).hex()[:32]


def twilio_webhook_token(settings: Settings) -> str:
    return settings.twilio_auth_token or _derived(settings, "twilio")


def whatsapp_app_secret(settings: Settings) -> str:
    return settings.whatsapp_app_secret or _derived(settings, "whatsapp-app-secret")


def whatsapp_verify_token(settings: Settings) -> str:
    return settings.whatsapp_verify_token or _derived(settings, "whatsapp-verify")


def email_webhook_key(settings: Settings) -> str:
    return settings.email_webhook_key or _derived(settings, "email-webhook")
