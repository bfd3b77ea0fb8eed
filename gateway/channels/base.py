"""The interface every channel's outbound sender implements."""
from __future__ import annotations

from typing import Protocol

from gateway.domain.types import Channel, OutgoingMessage, SendResult


class ChannelSender(Protocol):
    """Sends one message on one channel and classifies the provider's answer.

    Implementations never raise for provider or network errors: they return a SendResult whose
    outcome tells the outbox what to do (retry, throttle, fall back, fail, mark opted out).

    Optional, asked with getattr: `provider` (the metrics label), `lookup(...)` (did an attempt of
    unknown outcome reach the provider), `download_media(source)` with `media_source`, the name of
    the stored attachment's field that `source` is taken from ("url", "provider_media_id").
    A channel package builds its senders from settings (`<package>.sender.live_senders`, see
    gateway.channels.registry); gateway.channels.senders puts them, or the sandbox, in place per channel.
    """

    channel: Channel

    async def send(self, msg: OutgoingMessage) -> SendResult: ...
