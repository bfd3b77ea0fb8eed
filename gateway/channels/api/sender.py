"""The API channel's sender, per the registry's convention (gateway.channels.registry): live when
GATEWAY_API_CHANNEL_WEBHOOK_URL is set (the sender itself, signing and retries: gateway.channels.api.webhook)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.channels.api.webhook import ApiWebhookSender, api_sender
from gateway.channels.modes import live_channels
from gateway.domain.types import Channel

if TYPE_CHECKING:
    from gateway.app.runtime import Runtime


def live_senders(rt: Runtime) -> dict[Channel, ApiWebhookSender]:
    return {Channel.API: api_sender(rt.settings, rt.http)} if Channel.API in live_channels(rt.settings) else {}
