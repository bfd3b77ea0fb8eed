"""Which sender carries each channel, built from the settings each channel owns.

`build_senders` gives every channel its provider's sender where `channel_modes` says live and the
sandbox otherwise (each channel package's `sender.live_senders`, see gateway.channels.registry); `sending_address` says which of our numbers, WhatsApp numbers or mailboxes a
channel sends from (rate limits and pauses are kept per sending address); `whatsapp_reengage_template`
which template re-opens a closed WhatsApp window. The outbox sees `ChannelSender`s and these answers,
never a provider's settings.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.app.settings import Settings
from gateway.channels.base import ChannelSender
from gateway.channels.modes import whatsapp_provider
from gateway.channels.registry import CHANNELS, parts
from gateway.channels.sandbox import SandboxSender
from gateway.domain.types import Channel, TemplateRef

if TYPE_CHECKING:
    from gateway.app.runtime import Runtime
    from gateway.pipeline.outbox.sender import PrepareOutgoing


def build_senders(rt: Runtime, packages=CHANNELS) -> dict[Channel, ChannelSender]:
    """One sender per channel: the sandbox's, replaced by each channel package's live senders
    (`<package>.sender.live_senders(rt)`, per `channel_modes`), in registry order."""
    senders: dict[Channel, ChannelSender] = {channel: SandboxSender(channel) for channel in Channel}
    for live_senders in parts(packages, "sender", "live_senders"):
        senders.update(live_senders(rt))
    return senders


def outgoing_steps(packages=CHANNELS) -> dict[Channel, PrepareOutgoing]:
    """The channels' last steps before a send (`<package>.sender.PREPARE`), for the outbox."""
    steps: dict[Channel, PrepareOutgoing] = {}
    for prepare in parts(packages, "sender", "PREPARE", required=False):
        steps.update(prepare)
    return steps


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
