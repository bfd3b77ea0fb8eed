"""Outbound side of the API channel: HMAC-SHA256-signed JSON webhooks to the business's URL.

Signature header: `X-Gateway-Signature: t=<unix seconds>,v1=<hex hmac_sha256(secret, "<t>.<body>")>`.
The receiver recomputes it over the raw body and rejects stale timestamps (see `verify`).
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time

import aiohttp

from gateway.app.settings import Settings
from gateway.channels.http import retry_after_seconds
from gateway.domain.types import Channel, OutgoingMessage, SendOutcome, SendResult

SIGNATURE_HEADER = "X-Gateway-Signature"


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    ts = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


def verify(secret: str, body: bytes, header: str | None, *, max_age: float = 300,
           now: float | None = None) -> bool:
    if not header:
        return False
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        ts = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - ts) > max_age:
        return False
    expected = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))


def webhook_body(msg: OutgoingMessage) -> dict:
    return {
        "type": "message.outbound",
        "message_id": msg.message_id,
        "to": msg.to,
        "text": msg.text,
        "buttons": [{"id": b.id, "title": b.title} for b in msg.buttons],
        "attachments": [{"url": a.url, "content_type": a.content_type} for a in msg.attachments if a.url],
        "purpose": msg.purpose.value,
        "metadata": dict(msg.metadata),
    }


class ApiWebhookSender:
    channel = Channel.API

    def __init__(self, session: aiohttp.ClientSession, *, url: str, secret: str, timeout: float = 10.0):
        self.session = session
        self.url = url
        self.secret = secret
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    async def send(self, msg: OutgoingMessage) -> SendResult:
        body = json.dumps(webhook_body(msg), ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(self.secret, body),
                   "Idempotency-Key": f"msg-{msg.message_id}"}
        try:
            async with self.session.post(self.url, data=body, headers=headers, timeout=self.timeout) as resp:
                text = (await resp.text())[:300]
                if 200 <= resp.status < 300:
                    return SendResult(SendOutcome.SENT, provider_message_id=f"api-{msg.message_id}", status="delivered")
                if resp.status == 429:
                    return SendResult(SendOutcome.THROTTLED, error_code="429", error_message=text,
                                      retry_after=retry_after_seconds(resp.headers.get("Retry-After")))
                if resp.status >= 500 or resp.status in (408, 409):
                    return SendResult(SendOutcome.RETRY, error_code=str(resp.status), error_message=text)
                return SendResult(SendOutcome.FAILED, error_code=str(resp.status), error_message=text)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            return SendResult(SendOutcome.RETRY, error_code="network", error_message=str(exc) or type(exc).__name__)


def api_sender(s: Settings, http: aiohttp.ClientSession) -> ApiWebhookSender:
    """The API channel's sender: posts to GATEWAY_API_CHANNEL_WEBHOOK_URL, signed."""
    return ApiWebhookSender(http, url=s.api_channel_webhook_url, secret=s.api_channel_webhook_secret or s.secret_key)
