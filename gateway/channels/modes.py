"""Which channels send through a live provider and which run in sandbox: decided here, once.

A channel is live when its provider's credentials are set, sandbox otherwise, each on its own:
configuring one channel never changes another. The senders (`gateway.channels.senders.build_senders`), the
routing policy (`routing_policy`) and the start-up log all read
`channel_modes`, so what the log says is what the gateway does.
"""
from __future__ import annotations

from gateway.app.settings import Settings
from gateway.domain.routing import Policy
from gateway.domain.types import Channel

LIVE = "live"
SANDBOX = "sandbox"


def whatsapp_provider(s: Settings) -> str | None:
    """"cloud" (Meta's API, preferred when both are set), "twilio", or None (sandbox)."""
    if s.whatsapp_cloud_enabled:
        return "cloud"
    if s.twilio_enabled and s.twilio_whatsapp_from:
        return "twilio"
    return None


def channel_modes(s: Settings) -> dict[Channel, str]:
    """LIVE or SANDBOX for every channel. Web chat is always live: its sender is the visitor's socket."""
    live = {
        Channel.SMS: s.twilio_enabled and bool(s.twilio_from_number or s.twilio_messaging_service_sid),
        Channel.WHATSAPP: whatsapp_provider(s) is not None,
        Channel.EMAIL: s.smtp_enabled,
        Channel.API: bool(s.api_channel_webhook_url),
        Channel.WEBCHAT: True,
    }
    return {channel: LIVE if live[channel] else SANDBOX for channel in Channel}


def live_channels(s: Settings) -> frozenset[Channel]:
    return frozenset(c for c, mode in channel_modes(s).items() if mode == LIVE)


def routing_policy(s: Settings) -> Policy:
    """The routing policy these settings make: live channels, the WhatsApp template, consent regimes."""
    template = bool(s.whatsapp_reengage_template or s.twilio_whatsapp_template_sid)
    return Policy(template, live_channels(s), s.consent_regimes)
