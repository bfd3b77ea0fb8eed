"""Which sender carries each channel, built from the settings each channel owns.

`build_senders` gives every channel its provider's sender where `channel_modes` says live and the
sandbox otherwise; `sending_address` says which of our numbers, WhatsApp numbers or mailboxes a
channel sends from (rate limits and pauses are kept per sending address); `whatsapp_reengage_template`
which template re-opens a closed WhatsApp window. The outbox sees `ChannelSender`s and these answers,
never a provider's settings.
"""
from __future__ import annotations

import aiohttp

from gateway.channels.api.webhook import api_sender
from gateway.channels.base import ChannelSender
from gateway.channels.email.sender import smtp_sender
from gateway.channels.modes import LIVE, channel_modes, whatsapp_provider
from gateway.channels.sandbox import SandboxSender
from gateway.channels.twilio.sender import twilio_sender
from gateway.channels.whatsapp.sender import meta_sender
from gateway.infra.guarded_fetch import GuardedFetcher
from gateway.app.settings import Settings
from gateway.domain.types import Channel, TemplateRef


def build_senders(s: Settings, http: aiohttp.ClientSession,
                  fetcher: GuardedFetcher | None = None) -> dict[Channel, ChannelSender]:
    """One sender per channel: the provider's where `channel_modes` says live, the sandbox otherwise.

    Media downloads go through `fetcher`, to each provider's media hosts (settings) and API origin.
    """
    live = {channel for channel, mode in channel_modes(s).items() if mode == LIVE}
    senders: dict[Channel, ChannelSender] = {channel: SandboxSender(channel) for channel in Channel}
    if Channel.SMS in live:
        senders[Channel.SMS] = twilio_sender(s, http, fetcher, Channel.SMS)
    if whatsapp_provider(s) == "twilio":
        senders[Channel.WHATSAPP] = twilio_sender(s, http, fetcher, Channel.WHATSAPP)
    elif whatsapp_provider(s) == "cloud":
        senders[Channel.WHATSAPP] = meta_sender(s, http, fetcher)
    if Channel.EMAIL in live:
        senders[Channel.EMAIL] = smtp_sender(s)
    if Channel.API in live:
        senders[Channel.API] = api_sender(s, http)
    return senders


def sending_address(s: Settings, channel: Channel) -> str | None:
    """Which of our addresses `channel` sends from, per its settings (None: the channel has one sender)."""
    if channel is Channel.SMS:
        return s.twilio_from_number or s.twilio_messaging_service_sid
    if channel is Channel.WHATSAPP:
        return s.whatsapp_phone_number_id if whatsapp_provider(s) == "cloud" else s.twilio_whatsapp_from
    if channel is Channel.EMAIL:
        return s.email_from
    return None


def whatsapp_reengage_template(s: Settings, text: str) -> TemplateRef | None:
    """The template that re-opens a WhatsApp conversation whose 24-hour window closed, carrying
    `text`, per the provider's settings; None when none is configured."""
    if whatsapp_provider(s) == "cloud" and s.whatsapp_reengage_template:
        return TemplateRef(s.whatsapp_reengage_template, s.whatsapp_template_language, (text,))
    if s.twilio_whatsapp_template_sid:
        return TemplateRef(s.twilio_whatsapp_template_sid, variables={"1": text})
    if s.whatsapp_reengage_template:
        return TemplateRef(s.whatsapp_reengage_template, s.whatsapp_template_language, (text,))
    return None
