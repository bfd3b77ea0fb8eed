"""Inbound-email webhooks: SendGrid Inbound Parse and Mailgun routes forward(), to Inbound.

Both deliver multipart/form-data (Mailgun urlencoded when there are no attachments). Read the form
with `read_form`, which keeps text fields as bytes: SendGrid posts text/html in the mail's own
charset (named in its `charsets` field), so decoding them as UTF-8 up front would garble them.
"""
from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from email.message import Message
from email.parser import HeaderParser
from email.policy import compat32
from typing import Any

from aiohttp import BodyPartReader, web

from gateway.channels.email.headers import decode_bytes
from gateway.channels.email.mime import content_ref, inbound_from_parts, iter_attachment_payloads, parse_mime
from gateway.channels.errors import PayloadError
from gateway.domain.inputs import loads
from gateway.domain.types import Attachment, Inbound

FieldValue = str | bytes
# Mailgun's raw-MIME field name is not confirmed (providers.md §7): accept both spellings.
MAILGUN_MIME_FIELDS = ("body-mime", "body_mime")


@dataclass(frozen=True)
class UploadedFile:
    field_name: str
    filename: str | None
    content_type: str | None
    data: bytes


async def read_form(request: web.Request, *, max_bytes: int = 30 * 1024 * 1024
                    ) -> tuple[dict[str, FieldValue], list[UploadedFile]]:
    """The webhook form: text fields (bytes for multipart, str for urlencoded) and uploaded files.

    Raises PayloadError beyond `max_bytes` (the multipart reader bypasses client_max_size).
    """
    if not request.content_type.startswith("multipart/"):
        form = await request.post()
        return {k: str(v) for k, v in form.items() if isinstance(v, str)}, []
    fields: dict[str, FieldValue] = {}
    files: list[UploadedFile] = []
    total = 0
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            continue   # nested multipart: not used by either provider
        data = bytearray()
        while chunk := await part.read_chunk():
            total += len(chunk)
            if total > max_bytes:
                raise PayloadError("form too large")
            data.extend(chunk)
        if "Content-Transfer-Encoding" in part.headers or "Content-Encoding" in part.headers:
            try:
                data = bytearray(part.decode(bytes(data)))
            except (RuntimeError, ValueError) as exc:
                raise PayloadError(f"undecodable form part {part.name!r}") from exc
        if part.filename is not None:
            files.append(UploadedFile(part.name or "", part.filename,
                                      part.headers.get("Content-Type"), bytes(data)))
        elif part.name:
            fields[part.name] = bytes(data)
    return fields, files


def _text(fields: Mapping[str, FieldValue], name: str, charsets: Mapping[str, str] | None = None
          ) -> str | None:
    value = fields.get(name)
    if value is None:
        return None
    charset = (charsets or {}).get(name)
    if isinstance(value, (bytes, bytearray)):
        return decode_bytes(bytes(value), charset)
    if any("\udc80" <= ch <= "\udcff" for ch in value):   # decoded with surrogateescape upstream
        return decode_bytes(value.encode("utf-8", "surrogateescape"), charset)
    return value


def _raw_bytes(fields: Mapping[str, FieldValue], name: str) -> bytes | None:
    value = fields.get(name)
    if value is None or isinstance(value, (bytes, bytearray)):
        return bytes(value) if value else None
    return value.encode("utf-8", "surrogateescape") or None


def _json(fields: Mapping[str, FieldValue], name: str) -> Any:
    text = _text(fields, name)
    # the one strict decoder (depth, NaN, 64-bit numbers); strings are checked per message later
    return loads(text, field=name, strings="keep") if text else None


def _file_attachments(files: Sequence[UploadedFile], info: Mapping[str, Any] | None = None
                      ) -> tuple[Attachment, ...]:
    out = []
    for f in files:
        meta = (info or {}).get(f.field_name) or {}
        digest = hashlib.sha256(f.data).hexdigest()
        out.append(Attachment(
            content_type=(meta.get("type") or f.content_type or "application/octet-stream").split(";")[0].strip().lower(),
            filename=meta.get("filename") or meta.get("name") or f.filename or None,
            size=len(f.data), sha256=digest, content_ref="sha256:" + digest))
    return tuple(out)


def _seed(fields: Mapping[str, FieldValue], names: Sequence[str]) -> bytes:
    """Stable bytes of the given fields, hashed into an id when the mail has no Message-ID."""
    return b"\0".join(_raw_bytes(fields, n) or b"" for n in names)


def iter_webhook_payloads(fields: Mapping[str, FieldValue], files: Sequence[UploadedFile]
                          ) -> Iterator[tuple[str, bytes]]:
    """(content_ref, content) of each attachment of a SendGrid or Mailgun post, either mode."""
    for name in ("email", *MAILGUN_MIME_FIELDS):
        raw = _raw_bytes(fields, name)
        if raw:
            yield from iter_attachment_payloads(raw)
            return
    for f in files:
        yield content_ref(f.data), f.data


def parse_sendgrid(fields: Mapping[str, FieldValue], files: Sequence[UploadedFile] = (), *,
                   reply_domain: str | None = None) -> Inbound:
    """SendGrid Inbound Parse, default mode (parsed fields) or raw mode (MIME in `email`)."""
    envelope = _json(fields, "envelope") or {}
    if not isinstance(envelope, dict):
        raise PayloadError("envelope is not an object")
    env_from = envelope.get("from")
    env_to = [str(a) for a in envelope.get("to") or [] if a]
    extra = {k: _text(fields, k) for k in ("spam_score", "SPF", "dkim", "sender_ip") if k in fields}
    raw = _raw_bytes(fields, "email")
    if raw:
        inbound = parse_mime(raw, provider="sendgrid", envelope_from=env_from, envelope_to=env_to,
                             reply_domain=reply_domain)
        return _with_extra(inbound, {"sendgrid": extra} if extra else {})
    charsets = _json(fields, "charsets") or {}
    headers = HeaderParser(policy=compat32).parsestr(_text(fields, "headers", charsets) or "")
    # The parsed fields win over a header block that is missing or truncated.
    for name in ("from", "to", "cc", "subject"):
        value = _text(fields, name, charsets)
        if value and name.title() not in headers:
            headers[name.title()] = value
    info = _json(fields, "attachment-info") or {}
    return inbound_from_parts(
        provider="sendgrid", headers=headers, plain=_text(fields, "text", charsets),
        html=_text(fields, "html", charsets), attachments=_file_attachments(files, info),
        id_seed=_seed(fields, ("headers", "from", "subject", "text", "html")),
        envelope_from=env_from, envelope_to=env_to, reply_domain=reply_domain,
        extra={"sendgrid": extra} if extra else None)


def parse_mailgun(fields: Mapping[str, FieldValue], files: Sequence[UploadedFile] = (), *,
                  reply_domain: str | None = None) -> Inbound:
    """Mailgun route forward(): parsed fields (stripped-text preferred) or raw MIME."""
    recipients = [a.strip() for a in (_text(fields, "recipient") or "").split(",") if a.strip()]
    env_from = _text(fields, "sender")
    for name in MAILGUN_MIME_FIELDS:
        raw = _raw_bytes(fields, name)
        if raw:
            return parse_mime(raw, provider="mailgun", envelope_from=env_from,
                              envelope_to=recipients, reply_domain=reply_domain)
    pairs = _json(fields, "message-headers") or []
    if not isinstance(pairs, list):
        raise PayloadError("message-headers is not a list")
    headers = Message(policy=compat32)
    for pair in pairs:
        if isinstance(pair, (list, tuple)) and len(pair) >= 2:
            headers[str(pair[0])] = str(pair[1])
    for name, header in (("from", "From"), ("subject", "Subject"), ("Message-Id", "Message-ID"),
                         ("In-Reply-To", "In-Reply-To"), ("References", "References")):
        value = _text(fields, name)
        if value and header not in headers:
            headers[header] = value
    return inbound_from_parts(
        provider="mailgun", headers=headers, plain=_text(fields, "body-plain"),
        html=_text(fields, "body-html"), attachments=_file_attachments(files),
        id_seed=_seed(fields, ("message-headers", "from", "subject", "body-plain", "body-html")),
        envelope_from=env_from, envelope_to=recipients, reply_domain=reply_domain,
        stripped_text=_text(fields, "stripped-text"))


def verify_mailgun_signature(timestamp: str, token: str, signature: str, signing_key: str, *,
                             now: float | None = None, max_age: float | None = 600) -> bool:
    """Mailgun's hex HMAC-SHA256(signing_key, timestamp + token), constant-time.

    Stale timestamps (older or newer than `max_age` seconds; None disables) are rejected. Replay
    protection (remembering tokens) is the caller's job.
    """
    if not (timestamp and token and signature and signing_key):
        return False
    if max_age is not None:
        try:
            age = abs((time.time() if now is None else now) - float(timestamp))
        except ValueError:
            return False
        if age > max_age:
            return False
    expected = hmac.new(signing_key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), signature.strip().lower().encode("utf-8", "replace"))


def _with_extra(inbound: Inbound, extra: Mapping[str, Any]) -> Inbound:
    if not extra:
        return inbound
    return replace(inbound, extra={**inbound.extra, **extra})
