"""What a claimed outbox row becomes on the wire: the channel-neutral OutgoingMessage, and which
of our senders (number, WhatsApp number id, mailbox) it leaves from."""
from __future__ import annotations

from gateway.settings import Settings
from gateway.types import Attachment, Button, Channel, OutgoingMessage, Purpose, TemplateRef


def sender_key(settings: Settings, channel: Channel) -> str:
    """Which of our senders a channel sends from: rate limits and pauses are kept per sender."""
    s = settings
    sender = {Channel.SMS: s.twilio_from_number or s.twilio_messaging_service_sid,
              Channel.WHATSAPP: s.whatsapp_phone_number_id if s.whatsapp_cloud_enabled else s.twilio_whatsapp_from,
              Channel.EMAIL: s.email_from}.get(channel)
    return f"{channel.value}:{sender or 'default'}"


def reengage_template(settings: Settings, text: str) -> TemplateRef | None:
    s = settings
    if s.whatsapp_cloud_enabled and s.whatsapp_reengage_template:
        return TemplateRef(s.whatsapp_reengage_template, s.whatsapp_template_language, (text,))
    if s.twilio_whatsapp_template_sid:
        return TemplateRef(s.twilio_whatsapp_template_sid, variables={"1": text})
    if s.whatsapp_reengage_template:
        return TemplateRef(s.whatsapp_reengage_template, s.whatsapp_template_language, (text,))
    return None


def status_callback_url(settings: Settings, channel: Channel) -> str | None:
    if channel in (Channel.SMS, Channel.WHATSAPP):
        return f"{settings.base_url}/webhooks/twilio/status"
    return None


def build_outgoing(settings: Settings, row) -> OutgoingMessage:
    """The channel-neutral message to send, from a claimed row (outbox columns + message body)."""
    content = row["content"] or {}
    template = None
    if content.get("template"):
        t = content["template"]
        template = TemplateRef(t["name"], t.get("language", "en_US"), tuple(t.get("parameters", ())),
                               t.get("variables", {}))
    elif content.get("needs_template"):
        template = reengage_template(settings, row["body"])
    channel = Channel(row["channel"])
    return OutgoingMessage(
        message_id=row["message_id"], channel=channel, to=row["to_address"], text=row["body"],
        attachments=tuple(Attachment(**a) for a in content.get("attachments", ())),
        buttons=tuple(Button(**b) for b in content.get("buttons", ())),
        button_label=content.get("button_label"),
        template=template, purpose=Purpose(row["purpose"]), subject=content.get("subject"),
        html=content.get("html"), in_reply_to=content.get("in_reply_to"),
        references=tuple(content.get("references", ())), reply_to=content.get("reply_to"),
        status_callback_url=status_callback_url(settings, channel),
        metadata={"conversation_id": row["conversation_id"], "seq": row["seq"]},
    )
