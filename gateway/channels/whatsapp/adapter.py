"""Meta WhatsApp Cloud API webhooks: subscription check, X-Hub-Signature-256, payload parsing.

Pure translation: a verified, decoded webhook body in, a `WebhookBatch` of `Inbound` and
`StatusUpdate` out. One POST can carry several entries, changes, messages and statuses; every
one is read. Changes for other fields are acknowledged and listed in `ignored`.
"""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping

from gateway.channels.errors import PayloadError
from gateway.domain.types import Attachment, Channel, Inbound, Location, StatusUpdate

PROVIDER = "meta"
SIGNATURE_HEADER = "X-Hub-Signature-256"
MEDIA_TYPES = ("image", "document", "audio", "video", "sticker")
STATUSES = {"sent": "sent", "delivered": "delivered", "read": "read", "failed": "failed"}


@dataclass(frozen=True)
class WebhookBatch:
    messages: tuple[Inbound, ...] = ()
    statuses: tuple[StatusUpdate, ...] = ()
    ignored: tuple[str, ...] = ()       # short descriptions of skipped items, for the log


def verify_subscription(query: Mapping[str, str], verify_token: str) -> str | None:
    """The hub.challenge to echo when Meta's subscription GET carries our verify token."""
    challenge = query.get("hub.challenge")
    token = query.get("hub.verify_token") or ""
    if query.get("hub.mode") != "subscribe" or not verify_token or challenge is None:
        return None
    if not hmac.compare_digest(token.encode(), verify_token.encode()):
        return None
    return challenge


def verify_signature(raw_body: bytes, header: str | None, app_secret: str) -> bool:
    """True when `header` is "sha256=" + lowercase hex HMAC-SHA256(app_secret, raw_body)."""
    if not header or not app_secret or len(header) != 71 or not header.startswith("sha256="):
        return False
    expected = hmac.new(app_secret.encode(), raw_body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header[7:].encode())


def signature_header(raw_body: bytes, app_secret: str) -> str:
    """The X-Hub-Signature-256 value Meta sends for `raw_body` (for fakes and simulation)."""
    return "sha256=" + hmac.new(app_secret.encode(), raw_body, hashlib.sha256).hexdigest()


def _list(obj: Mapping[str, Any], key: str, where: str) -> list:
    value = obj.get(key, [])
    if not isinstance(value, list):
        raise PayloadError(f"{where}.{key} is not a list")
    return value


def _dict(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise PayloadError(f"{where} is not an object")
    return value


def _phone(digits: str) -> str:
    """WhatsApp ids are digits without '+'; a non-numeric id (BSUID) is kept as is."""
    return "+" + digits if digits.isdigit() else digits


def _opt_text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _time(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        return datetime.fromtimestamp(int(value), tz=timezone.utc)
    except (TypeError, ValueError, OverflowError):
        raise PayloadError(f"timestamp is not Unix seconds: {value!r}") from None


def parse_webhook(payload: Any) -> WebhookBatch:
    """Every message and status of one webhook POST; PayloadError when the envelope is malformed."""
    payload = _dict(payload, "payload")
    if payload.get("object") != "whatsapp_business_account":
        raise PayloadError(f"object is {payload.get('object')!r}, not whatsapp_business_account")
    if "entry" not in payload:
        raise PayloadError("entry is missing")
    messages: list[Inbound] = []
    statuses: list[StatusUpdate] = []
    ignored: list[str] = []
    for entry in _list(payload, "entry", "payload"):
        entry = _dict(entry, "entry")
        for change in _list(entry, "changes", "entry"):
            change = _dict(change, "change")
            field = change.get("field")
            if field != "messages":
                ignored.append(f"field {field}")
                continue
            value = _dict(change.get("value"), "change.value")
            _parse_value(value, entry.get("id"), messages, statuses, ignored)
    return WebhookBatch(tuple(messages), tuple(statuses), tuple(ignored))


def _parse_value(value: dict, waba_id: str | None, messages: list[Inbound],
                 statuses: list[StatusUpdate], ignored: list[str]) -> None:
    metadata = _dict(value.get("metadata", {}), "value.metadata")
    names = {c["wa_id"]: c for c in _list(value, "contacts", "value")
             if isinstance(c, dict) and isinstance(c.get("wa_id"), str)}
    for m in _list(value, "messages", "value"):
        messages.append(_parse_message(_dict(m, "message"), metadata, names, waba_id))
    for s in _list(value, "statuses", "value"):
        update = _parse_status(_dict(s, "status"))
        if update is None:
            ignored.append(f"status {s.get('status')} {s.get('id')}")
        else:
            statuses.append(update)
    for err in _list(value, "errors", "value"):
        ignored.append(f"error {err.get('code') if isinstance(err, dict) else err}")


def _parse_message(m: dict, metadata: dict, contacts: dict, waba_id: str | None) -> Inbound:
    if not m.get("id") or not m.get("from"):
        raise PayloadError("message without id or from")
    if not isinstance(m["id"], str) or not isinstance(m["from"], str):
        raise PayloadError("message id and from must be strings")
    mtype = m.get("type") or "unknown"
    if not isinstance(mtype, str):
        raise PayloadError("message type must be a string")
    sender = str(m["from"])
    contact = contacts.get(sender) or {}
    extra: dict[str, Any] = {"type": mtype}
    if not sender.isdigit():
        extra["address_kind"] = "whatsapp_id"
    for key in ("user_id", "parent_user_id"):   # BSUIDs on newer payloads
        if contact.get(key):
            extra[key] = contact[key]
    if waba_id:
        extra["waba_id"] = waba_id
    if metadata.get("display_phone_number"):
        extra["display_phone_number"] = metadata["display_phone_number"]
    context = m.get("context") if isinstance(m.get("context"), dict) else {}
    for flag in ("forwarded", "frequently_forwarded"):
        if context.get(flag):
            extra[flag] = True
    fields = _content(mtype, m, extra)
    profile = contact.get("profile") if isinstance(contact.get("profile"), dict) else {}
    return Inbound(
        channel=Channel.WHATSAPP, provider=PROVIDER, provider_message_id=str(m["id"]),
        sender=_phone(sender), recipient=_opt_text(metadata.get("phone_number_id")),
        received_at=_time(m.get("timestamp")), profile_name=_opt_text(profile.get("name")) or None,
        in_reply_to=_opt_text(context.get("id")) or None, raw=m, extra=extra, **fields,
    )


def _content(mtype: str, m: dict, extra: dict[str, Any]) -> dict[str, Any]:
    """Inbound fields for the message's type; type specifics go into `extra`."""
    body = m.get(mtype) if isinstance(m.get(mtype), dict) else {}
    if mtype == "text":
        return {"text": body.get("body", "")}
    if mtype in MEDIA_TYPES:
        for flag in ("voice", "animated"):
            if flag in body:
                extra[flag] = body[flag]
        att = Attachment(content_type=body.get("mime_type"), provider_media_id=body.get("id"),
                         sha256=body.get("sha256"), caption=body.get("caption"), filename=body.get("filename"))
        return {"text": body.get("caption") or "", "attachments": (att,)}
    if mtype == "location":
        try:
            loc = Location(float(body["latitude"]), float(body["longitude"]),
                           name=body.get("name"), address=body.get("address"))
        except (KeyError, TypeError, ValueError):
            raise PayloadError("location without numeric latitude/longitude") from None
        if body.get("url"):
            extra["url"] = body["url"]
        return {"location": loc}
    if mtype == "reaction":
        extra["reaction"] = {"message_id": body.get("message_id"), "emoji": body.get("emoji") or ""}
        return {}
    if mtype == "interactive":
        kind = body.get("type")
        if kind is not None and not isinstance(kind, str):
            raise PayloadError("interactive.type must be a string")
        extra["interactive_type"] = kind
        if kind in ("button_reply", "list_reply"):
            reply = _dict(body.get(kind) or {}, f"interactive.{kind}")
            if reply.get("description"):
                extra["description"] = reply["description"]
            return {"text": reply.get("title", ""), "reply_id": reply.get("id"), "reply_title": reply.get("title")}
        extra[kind or "interactive"] = body.get(kind, body)   # e.g. nfm_reply (Flows)
        return {}
    if mtype == "button":  # quick-reply button on a template
        return {"text": body.get("text", ""), "reply_id": body.get("payload"), "reply_title": body.get("text")}
    if mtype == "contacts":
        shared = m.get("contacts") if isinstance(m.get("contacts"), list) else []
        extra["contacts"] = shared
        names = [c["name"].get("formatted_name", "") for c in shared
                 if isinstance(c, dict) and isinstance(c.get("name"), dict)]
        names = [n for n in names if isinstance(n, str) and n]
        return {"text": "Shared contact: " + ", ".join(names) if names else ""}
    if mtype == "system":
        extra["system"] = body
        return {"text": body.get("body", "")}
    extra[mtype] = body            # order, unsupported, and types added later
    if m.get("errors"):
        extra["errors"] = m["errors"]
    return {"text": body.get("text", "") if mtype == "order" else ""}


def _parse_status(s: dict) -> StatusUpdate | None:
    if not s.get("id") or not s.get("status"):
        raise PayloadError("status without id or status")
    if not isinstance(s["id"], str) or not isinstance(s["status"], str):
        raise PayloadError("status id and status must be strings")
    status = STATUSES.get(s["status"])
    if status is None:             # deleted, warning, ...: nothing to record
        return None
    errors = s.get("errors") if isinstance(s.get("errors"), list) else []
    error = errors[0] if errors and isinstance(errors[0], dict) else {}
    details = (error.get("error_data") or {}).get("details") if isinstance(error.get("error_data"), dict) else None
    recipient = s.get("recipient_id")
    return StatusUpdate(
        channel=Channel.WHATSAPP, provider=PROVIDER, provider_message_id=str(s["id"]), status=status,
        occurred_at=_time(s.get("timestamp")),
        error_code=str(error["code"]) if error.get("code") is not None else None,
        error_message=" - ".join(str(x) for x in (error.get("title"), details or error.get("message")) if x) or None,
        recipient=_phone(str(recipient)) if recipient else None, raw=s,
    )
