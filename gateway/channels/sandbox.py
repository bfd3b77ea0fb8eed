"""Sandbox sender: used for any channel without provider credentials.

The message is recorded as sent (its thread entry, the API and the demo page show it) instead of
leaving the machine, so `gateway run` on a fresh machine is fully usable.
"""
from __future__ import annotations

from gateway.app.log import get_logger
from gateway.channels.sms_segments import count_segments
from gateway.domain.types import Channel, OutgoingMessage, SendOutcome, SendResult

log = get_logger(__name__)


class SandboxSender:
    def __init__(self, channel: Channel):
        self.channel = channel
        self.sent: list[OutgoingMessage] = []

    async def send(self, msg: OutgoingMessage) -> SendResult:
        self.sent.append(msg)
        if len(self.sent) > 1000:
            del self.sent[:500]
        log.info("sandbox send (not delivered to a provider)", channel=self.channel.value,
                 message_id=msg.message_id, to=msg.to, chars=len(msg.text))
        return SendResult(SendOutcome.SENT, provider_message_id=f"sandbox-{msg.message_id}", status="sent",
                          segments=count_segments(msg.text).segments if self.channel is Channel.SMS else None)
