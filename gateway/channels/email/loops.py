"""Mail loop safety: recognise machine-generated inbound mail, and mark our own outbound mail.

Inbound auto-replies, bounces and bulk mail are stored but never answered (Inbound.auto_generated),
otherwise a bot and an out-of-office responder answer each other forever. Outbound, we ask
responders not to answer us (RFC 3834 Auto-Submitted, Exchange's X-Auto-Response-Suppress).
"""
from __future__ import annotations

import re

from gateway.channels.email.headers import HeaderSource, addresses, first_header, raw_headers
from gateway.domain.types import Purpose

_BULK_PRECEDENCE = {"bulk", "junk", "list", "auto_reply"}
_SUPPRESS_MARKERS = {"all", "oof", "autoreply"}
_DAEMON_LOCALPARTS = {"mailer-daemon", "postmaster"}
# Outlook/Exchange put these in front of the original subject of an automatic reply.
_AUTO_SUBJECT = re.compile(
    r"^(automatic reply|auto-?reply|out of office|réponse automatique|automatische antwort|"
    r"respuesta automática)\s*:", re.IGNORECASE)


def auto_generated_reason(headers: HeaderSource, *, envelope_from: str | None = None) -> str | None:
    """Why this mail looks machine-generated (a short label), or None for a person's mail.

    `envelope_from` is the SMTP MAIL FROM when known; an empty string is the null sender "<>".
    """
    auto_submitted = (first_header(headers, "Auto-Submitted") or "").split(";")[0].strip().lower()
    if auto_submitted and auto_submitted != "no":
        return f"auto-submitted: {auto_submitted}"
    precedence = (first_header(headers, "Precedence") or "").strip().lower()
    if precedence in _BULK_PRECEDENCE:
        return f"precedence: {precedence}"
    if raw_headers(headers, "X-Autoreply") or raw_headers(headers, "X-Autorespond"):
        return "x-autoreply"
    suppress = first_header(headers, "X-Auto-Response-Suppress") or ""
    if {m.strip().lower() for m in suppress.split(",")} & _SUPPRESS_MARKERS:
        return "x-auto-response-suppress"
    return_paths = raw_headers(headers, "Return-Path")
    if envelope_from is not None and envelope_from.strip() in ("", "<>"):
        return "null sender"
    if return_paths and return_paths[0].strip() in ("<>", ""):
        return "null return-path"
    senders = addresses(raw_headers(headers, "From") + return_paths + [envelope_from or ""])
    if any(addr.split("@")[0] in _DAEMON_LOCALPARTS for _, addr in senders):
        return "mailer-daemon"
    if (first_header(headers, "Content-Type") or "").lower().startswith("multipart/report"):
        return "multipart/report"   # delivery status notifications and read receipts (RFC 6522)
    if raw_headers(headers, "List-Id") or raw_headers(headers, "List-Unsubscribe"):
        return "mailing list"
    if _AUTO_SUBJECT.match(first_header(headers, "Subject") or ""):
        return "auto-reply subject"
    return None


def is_auto_generated(headers: HeaderSource, *, envelope_from: str | None = None) -> bool:
    """True for auto-replies, bounces and bulk mail: store them, never answer them."""
    return auto_generated_reason(headers, envelope_from=envelope_from) is not None


def outbound_loop_headers(purpose: Purpose) -> dict[str, str]:
    """Headers that stop responders answering our mail; replies a person may write get fewer."""
    headers = {"X-Auto-Response-Suppress": "OOF, AutoReply"}
    if purpose is not Purpose.REPLY:
        headers["Auto-Submitted"] = "auto-generated"   # RFC 3834 §5: not a reply to anything
    return headers
