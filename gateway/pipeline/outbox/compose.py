"""What a claimed outbox row becomes on the wire: the channel-neutral OutgoingMessage, and the key
its sender is rate-limited under. What is provider-specific (which number a channel sends from, a
WhatsApp re-engagement template) is asked of the channels (gateway.channels.senders)."""
from __future__ import annotations

from gateway.app.settings import Settings
from gateway.channels.senders import sending_address, whatsapp_reengage_template
from gateway.domain.types import Attachment, Button, Channel, OutgoingMessage, Purpose, TemplateRef


def sender_key(settings: Settings, channel: Channel, from_address: str | None = None) -> str:
    """Which of our senders a message leaves from (an inbox's address, else the channel's sender in
    settings): rate limits and pauses are kept per sender."""
    return f"{channel.value}:{from_address or sending_address(settings, channel) or 'default'}"


def build_outgoing(settings: Settings, row) -> OutgoingMessage:
    """The channel-neutral message to send, from a claimed row (outbox columns + message body)."""
    content = row["content"] or {}
    template = None
    if content.get("template"):
        t = content["template"]
        template = TemplateRef(t["name"], t.get("language", "en_US"), tuple(t.get("parameters", ())),
                               t.get("variables", {}))
    elif content.get("needs_template"):
        template = whatsapp_reengage_template(settings, row["body"])
    channel = Channel(row["channel"])
    return OutgoingMessage(
        message_id=row["message_id"], channel=channel, to=row["to_address"], text=row["body"],
        sender=row.get("from_address"),
        attachments=tuple(Attachment(**a) for a in content.get("attachments", ())),
        buttons=tuple(Button(**b) for b in content.get("buttons", ())),
        button_label=content.get("button_label"),
        template=template, purpose=Purpose(row["purpose"]), subject=content.get("subject"),
        html=content.get("html"), in_reply_to=content.get("in_reply_to"),
        references=tuple(content.get("references", ())), reply_to=content.get("reply_to"),
        metadata={"conversation_id": row["conversation_id"], "seq": row["seq"]},
    )
