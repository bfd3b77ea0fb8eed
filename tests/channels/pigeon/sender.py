"""Pigeon post's sender: an outbound SMS is a JSON POST to PIGEON_OUTBOUND_URL."""
from __future__ import annotations

import aiohttp
from pigeon import secrets

from gateway.domain.types import Channel, OutgoingMessage, SendOutcome, SendResult


class PigeonSender:
    channel = Channel.SMS
    provider = "pigeon"

    def __init__(self, http: aiohttp.ClientSession, url: str):
        self.http, self.url = http, url

    async def send(self, msg: OutgoingMessage) -> SendResult:
        try:
            async with self.http.post(self.url, json={"to": msg.to, "text": msg.text}) as resp:
                if resp.status >= 500:
                    return SendResult(SendOutcome.RETRY, error_code=str(resp.status))
                body = await resp.json()
        except aiohttp.ClientError as exc:
            return SendResult(SendOutcome.RETRY, error_code="network", error_message=str(exc))
        return SendResult(SendOutcome.SENT, provider_message_id=body["id"], status="sent")


def live_senders(rt) -> dict[Channel, PigeonSender]:
    return {Channel.SMS: PigeonSender(rt.http, secrets.outbound_url())}
