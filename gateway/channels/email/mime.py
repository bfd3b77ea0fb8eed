"""Raw MIME (RFC 5322 bytes) to the normalized Inbound, best effort and never crashing on bad mail.

The message is parsed with the lenient compat32 policy; headers are decoded by
gateway.channels.email.headers so wrong or missing charset declarations still give readable text.
`inbound_from_parts` is the one place an Inbound is assembled, shared with the SendGrid and Mailgun
adapters.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import Message
from email.policy import compat32
from email.utils import parsedate_to_datetime
from typing import Any

from gateway.channels.email.bounces import delivery_report
from gateway.channels.email.headers import (HeaderSource, addresses, decode_bytes, decode_header_value, first_header,
                                            fix_surrogates, header_pairs, message_ids, raw_headers)
from gateway.channels.email.html_text import html_to_text
from gateway.channels.email.loops import auto_generated_reason
from gateway.channels.email.quotes import strip_quotes
from gateway.channels.email.threading import find_thread_token
from gateway.channels.errors import PayloadError
from gateway.domain.types import Attachment, Channel, Inbound

_MACHINE_PARTS = {"message/delivery-status", "message/disposition-notification",
                  "text/rfc822-headers"}
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_MAX_RAW_HEADERS = 200


def content_ref(data: bytes) -> str:
    """The storage key of an attachment's content ("sha256:<hex>")."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def parse_mime(raw: bytes, *, provider: str = "smtp", envelope_from: str | None = None,
               envelope_to: Sequence[str] = (), reply_domain: str | None = None) -> Inbound:
    """Normalize one raw email. `envelope_from` "" means the null sender "<>"; None means unknown.

    Raises PayloadError when the bytes cannot be an email (empty, or no sender address at all).
    """
    msg = _parse(raw)
    plain_part, html_part = _body_parts(msg)
    plain = _part_text(plain_part) if plain_part is not None else None
    html = _part_text(html_part) if html_part is not None else None
    attachments = tuple(att for att, _ in _attachments(msg, (plain_part, html_part)))
    extra: dict[str, Any] = {}
    report = delivery_report(msg)
    if report:
        extra["report"] = report
    return inbound_from_parts(
        provider=provider, headers=msg, plain=plain, html=html, attachments=attachments,
        id_seed=raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogateescape"),
        envelope_from=envelope_from, envelope_to=envelope_to, reply_domain=reply_domain,
        extra=extra)


def iter_attachment_payloads(raw: bytes) -> Iterator[tuple[str, bytes]]:
    """(content_ref, content) of each attachment, in the order parse_mime lists them."""
    msg = _parse(raw)
    for att, data in _attachments(msg, _body_parts(msg)):
        yield att.content_ref or content_ref(data), data


def inbound_from_parts(*, provider: str, headers: HeaderSource, plain: str | None, html: str | None,
                       attachments: tuple[Attachment, ...], id_seed: bytes,
                       envelope_from: str | None = None, envelope_to: Sequence[str] = (),
                       reply_domain: str | None = None, stripped_text: str | None = None,
                       extra: dict[str, Any] | None = None) -> Inbound:
    """Assemble an Inbound from decoded parts; `id_seed` hashes into an id when Message-ID is absent."""
    profile_name, sender = next(((n, a) for n, a in addresses(raw_headers(headers, "From"))
                                 if "@" in a), ("", ""))
    if not sender:
        sender = next((a for _, a in addresses([envelope_from or ""]) if "@" in a), "")
    if not sender:
        raise PayloadError("email without a sender address")
    to = addresses(raw_headers(headers, "To"))
    cc = addresses(raw_headers(headers, "Cc"))
    envelope_to = [a for _, a in addresses(envelope_to)]
    recipient = to[0][1] if to else (envelope_to[0] if envelope_to else None)
    ids = message_ids(next(iter(raw_headers(headers, "Message-ID")), None))
    full_text = _newlines(plain) if plain and plain.strip() else (html_to_text(html) if html else "")
    full_text = full_text.strip()
    stripped_text = _newlines(stripped_text or "").strip()
    text = stripped_text or strip_quotes(full_text)
    token_candidates = envelope_to + [a for _, a in to + cc] + [
        a for name in ("Delivered-To", "X-Original-To") for _, a in addresses(raw_headers(headers, name))]
    reason = auto_generated_reason(headers, envelope_from=envelope_from)
    extra = {**(extra or {}), "to": [a for _, a in to], "cc": [a for _, a in cc]}
    if envelope_from is not None or envelope_to:
        extra["envelope"] = {"from": envelope_from, "to": envelope_to}
    if reason:
        extra["auto_reason"] = reason
    return Inbound(
        channel=Channel.EMAIL,
        provider=provider,
        provider_message_id=ids[0] if ids else content_ref(id_seed),
        sender=sender,
        text=text,
        recipient=recipient,
        received_at=_received_at(first_header(headers, "Date")),
        profile_name=profile_name or None,
        attachments=attachments,
        in_reply_to=next(iter(message_ids(next(iter(raw_headers(headers, "In-Reply-To")), None))), None),
        references=tuple(message_ids(" ".join(raw_headers(headers, "References")))),
        thread_token=find_thread_token(token_candidates, reply_domain),
        subject=first_header(headers, "Subject"),
        full_text=full_text or None,
        html=html or None,
        auto_generated=reason is not None,
        raw={"headers": [[k, decode_header_value(v)]
                         for k, v in list(header_pairs(headers))[:_MAX_RAW_HEADERS]]},
        extra=extra,
    )


def _parse(raw: bytes) -> Message:
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogateescape")
    if not isinstance(raw, (bytes, bytearray)) or not raw.strip():
        raise PayloadError("empty email")
    return message_from_bytes(bytes(raw), policy=compat32)


def _newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _received_at(value: str | None) -> datetime:
    try:
        parsed = parsedate_to_datetime(value) if value else None
    except (TypeError, ValueError, IndexError, OverflowError):
        parsed = None
    if parsed is None:
        return datetime.now(UTC)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _is_attachment(part: Message) -> bool:
    try:
        return part.get_content_disposition() == "attachment"
    except Exception:  # noqa: BLE001 - malformed header: treat as inline
        return False


def _body_candidates(part: Message) -> Iterator[Message]:
    """Text leaves that may be the body, in order; attached messages are never entered."""
    if _is_attachment(part):
        return
    maintype, subtype = part.get_content_maintype(), part.get_content_subtype()
    if maintype == "text":
        yield part
    elif maintype == "multipart" and part.is_multipart():
        children = part.get_payload()
        for child in children[:1] if subtype == "related" else children:
            yield from _body_candidates(child)


def _body_parts(msg: Message) -> tuple[Message | None, Message | None]:
    plain = html = None
    for part in _body_candidates(msg):
        subtype = part.get_content_subtype()
        if subtype == "plain" and plain is None and _filename(part) is None:
            plain = part
        elif subtype == "html" and html is None and _filename(part) is None:
            html = part
    return plain, html


def _part_text(part: Message) -> str:
    data = part.get_payload(decode=True) or b""
    try:
        charset = part.get_content_charset()
    except Exception:  # noqa: BLE001
        charset = None
    if charset is None and part.get_content_subtype() == "html":
        sniffed = _META_CHARSET.search(data[:4096])
        charset = sniffed.group(1).decode("ascii") if sniffed else None
    text = _newlines(decode_bytes(data, charset))
    if part.get_content_subtype() == "plain" and _param(part, "format") == "flowed":
        text = unflow(text, delsp=_param(part, "delsp") == "yes")
    return text


def _param(part: Message, name: str) -> str:
    try:
        value = part.get_param(name)
    except Exception:  # noqa: BLE001
        return ""
    return (value[2] if isinstance(value, tuple) else value or "").strip().lower()


def unflow(text: str, *, delsp: bool = False) -> str:
    """Join the soft line breaks of format=flowed text (RFC 3676)."""
    out: list[str] = []
    pending: tuple[int, str] | None = None   # (quote depth, text so far) of an unfinished paragraph

    def render(depth: int, content: str) -> str:
        return (">" * depth + " " + content) if depth else content

    for line in text.split("\n"):
        depth = len(line) - len(line.lstrip(">"))
        content = line[depth:]
        content = content.removeprefix(" ")                  # space-stuffing
        if pending is not None:
            if pending[0] == depth:
                content = pending[1] + content
            else:
                out.append(render(*pending))
            pending = None
        if content.endswith(" ") and content != "-- ":
            pending = (depth, content[:-1] if delsp else content)
        else:
            out.append(render(depth, content))
    if pending is not None:
        out.append(render(*pending))
    return "\n".join(out)


def _filename(part: Message) -> str | None:
    """The decoded attachment file name (RFC 2231, RFC 2047 or raw 8-bit), without any path."""
    source = part
    raw_values = {k.lower(): v for k, v in part.raw_items()
                  if k.lower() in ("content-disposition", "content-type")}
    if any(fix_surrogates(v) != v for v in raw_values.values()):
        source = Message()   # raw 8-bit parameters: re-read them from properly decoded text
        for name, value in raw_values.items():
            source[name] = fix_surrogates(value)
    try:
        name = source.get_filename()
    except Exception:  # noqa: BLE001 - stdlib parameter parsing on hostile input
        return None
    if not name:
        return None
    name = decode_header_value(str(name)).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip()[:255]
    return name or None


def _part_bytes(part: Message) -> bytes:
    if part.get_content_maintype() == "message" and part.is_multipart():
        inner = part.get_payload(0)
        try:
            return inner.as_bytes(policy=compat32.clone(linesep="\r\n"))
        except Exception:  # noqa: BLE001
            return str(inner).encode("utf-8", "surrogateescape")
    return part.get_payload(decode=True) or b""


def _leaves(part: Message) -> Iterator[Message]:
    if part.get_content_maintype() == "multipart" and part.is_multipart():
        for child in part.get_payload():
            yield from _leaves(child)
    else:
        yield part


def _attachments(msg: Message, body_parts: Sequence[Message | None]
                 ) -> Iterator[tuple[Attachment, bytes]]:
    body_ids = {id(p) for p in body_parts if p is not None}
    for part in _leaves(msg):
        ctype = part.get_content_type()
        if id(part) in body_ids or ctype in _MACHINE_PARTS:
            continue
        filename = _filename(part)
        if (ctype in ("text/plain", "text/html") and filename is None
                and not _is_attachment(part)):
            continue   # an alternative or continuation body, not a file
        data = _part_bytes(part)
        digest = hashlib.sha256(data).hexdigest()
        yield Attachment(content_type=ctype, filename=filename, size=len(data), sha256=digest,
                         content_ref="sha256:" + digest), data
