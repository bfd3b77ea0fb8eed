"""Delivery status notifications (RFC 3464) inside multipart/report: who bounced, and why.

The report tells the outbox which of our messages failed: `original_message_id` is the Message-ID
we gave the bounced mail (see gateway.channels.email.render.build_email).
"""
from __future__ import annotations

from email.message import Message
from email.parser import HeaderParser
from email.policy import compat32
from typing import Any

from gateway.channels.email.headers import decode_header_value, message_ids


def _field(block: Message, name: str) -> str | None:
    value = block.get(name)
    return decode_header_value(str(value)) if value is not None else None


def _original_message_id(msg: Message) -> str | None:
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/rfc822" and part.is_multipart():
            headers = part.get_payload(0)
        elif ctype == "text/rfc822-headers":
            text = part.get_payload(decode=True) or b""
            headers = HeaderParser(policy=compat32).parsestr(text.decode("utf-8", "replace"))
        else:
            continue
        ids = message_ids(str(headers.get("Message-ID") or ""))
        if ids:
            return ids[0]
    return None


def delivery_report(msg: Message) -> dict[str, Any] | None:
    """{"type", "original_message_id", "recipients": [{recipient, action, status, diagnostic}]}."""
    if msg.get_content_type() != "multipart/report":
        return None
    recipients = []
    for part in msg.walk():
        if part.get_content_type() != "message/delivery-status" or not part.is_multipart():
            continue
        for block in part.get_payload()[1:]:   # first block: per-message fields
            final = _field(block, "Final-Recipient") or _field(block, "Original-Recipient") or ""
            recipients.append({
                "recipient": final.split(";", 1)[-1].strip().strip("<>").lower() or None,
                "action": (_field(block, "Action") or "").lower() or None,
                "status": _field(block, "Status"),
                "diagnostic": _field(block, "Diagnostic-Code"),
            })
    return {"type": str(msg.get_param("report-type") or "").lower() or None,
            "original_message_id": _original_message_id(msg), "recipients": recipients}
