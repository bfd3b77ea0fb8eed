"""The interface every channel's outbound sender implements."""
from __future__ import annotations

from typing import Protocol

from gateway.types import Channel, OutgoingMessage, SendResult


class ChannelSender(Protocol):
    """Sends one message on one channel and classifies the provider's answer.

    Implementations never raise for provider or network errors: they return a SendResult whose
    outcome tells the outbox what to do (retry, throttle, fall back, fail, mark opted out).
    """

    channel: Channel

    async def send(self, msg: OutgoingMessage) -> SendResult: ...
