"""OutgoingMessage -> email.message.EmailMessage, ready for SMTP.

Threading headers follow RFC 5322 §3.6.4 (In-Reply-To, References), marketing mail carries
RFC 2369/8058 one-click unsubscribe headers, and every mail carries loop-safety headers
(gateway.channels.email.loops).
"""
from __future__ import annotations

import html as html_lib
import re
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime, make_msgid, parseaddr

from gateway.channels.email.loops import outbound_loop_headers
from gateway.channels.render import render_numbered_menu
from gateway.domain.types import OutgoingMessage, Purpose

_ID_HEADERS = {"message-id", "in-reply-to", "references"}
_URL = re.compile(r"(https?://[^\s<>\"]+[^\s<>\".,;:!?)\]])")


class _IdFoldingPolicy(EmailPolicy):
    """SMTP policy that folds Message-ID lists between ids.

    The stdlib folds In-Reply-To/References as unstructured text and RFC 2047-encodes any id longer
    than a line (Gmail's are), which breaks threading in every client.
    """

    def _fold_ids(self, name: str, value: str) -> str:
        lines = [f"{name}:"]
        for msg_id in str(value).split():
            if len(lines[-1]) + 1 + len(msg_id) > self.max_line_length and lines[-1] != f"{name}:":
                lines.append("")
            lines[-1] += " " + msg_id
        return self.linesep.join(lines) + self.linesep

    def fold(self, name, value):
        if name.lower() in _ID_HEADERS:
            return self._fold_ids(name, value)
        return super().fold(name, value)

    def fold_binary(self, name, value):
        if name.lower() in _ID_HEADERS:
            return self._fold_ids(name, value).encode("ascii", "surrogateescape")
        return super().fold_binary(name, value)


SMTP_POLICY = _IdFoldingPolicy(linesep="\r\n")


def _bracket(msg_id: str) -> str:
    return f"<{msg_id.strip().strip('<>')}>"


def _one_line(value: str) -> str:
    return " ".join(value.split())


def email_text(msg: OutgoingMessage) -> str:
    """The plain-text body: text, buttons as a numbered menu, attachments as links."""
    text = render_numbered_menu(msg.text, msg.buttons)
    links = [f"{a.filename or a.caption or 'Attachment'}: {a.url}" for a in msg.attachments if a.url]
    if links:
        text = "\n\n".join(part for part in (text, "\n".join(links)) if part)
    return text


def text_to_html(text: str) -> str:
    """A simple HTML rendering of plain text: escaped, paragraphs, line breaks, linked URLs."""
    paragraphs = [p for p in re.split(r"\n[ \t]*\n", text.strip()) if p.strip()]
    body = "\n".join(
        "<p>" + _URL.sub(r'<a href="\1">\1</a>', html_lib.escape(p, quote=True)).replace("\n", "<br>\n")
        + "</p>" for p in paragraphs)
    return f"<!DOCTYPE html>\n<html><body>\n{body}\n</body></html>\n"


def _html_extras(msg: OutgoingMessage) -> str:
    """Menu and attachment links for a caller-supplied HTML body, which may lack them."""
    parts = []
    if msg.buttons:
        items = "".join(f"<li>{html_lib.escape(b.title)}</li>" for b in msg.buttons)
        parts.append(f"<ol>{items}</ol>")
    links = [a for a in msg.attachments if a.url]
    if links:
        items = "".join(
            f'<li><a href="{html_lib.escape(a.url, quote=True)}">'
            f"{html_lib.escape(a.filename or a.caption or 'Attachment')}</a></li>" for a in links)
        parts.append(f"<ul>{items}</ul>")
    return "\n".join(parts)


def _with_extras(html: str, extras: str) -> str:
    if not extras:
        return html
    at = html.lower().rfind("</body>")
    return html[:at] + extras + "\n" + html[at:] if at >= 0 else html + "\n" + extras


def _unsubscribe_headers(msg: OutgoingMessage, url: str | None, mailto: str | None
                         ) -> dict[str, str]:
    if msg.purpose is Purpose.MARKETING:
        url = msg.list_unsubscribe_url or url
    elif msg.list_unsubscribe_url:
        url = msg.list_unsubscribe_url      # explicit per message: honoured for any purpose
    else:
        return {}
    uris = [u for u in (url, mailto and ("mailto:" + mailto.removeprefix("mailto:"))) if u]
    if not uris:
        raise ValueError("marketing email needs an unsubscribe URL or mailto address")
    headers = {"List-Unsubscribe": ", ".join(f"<{u}>" for u in uris)}
    if url and url.lower().startswith("https://"):
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"   # RFC 8058 needs HTTPS
    return headers


def _from_header(address: str, display_name: str | None) -> str | Address:
    """The From header: `address` under `display_name` when one is given (headerregistry quotes and
    RFC 2047-encodes it as needed: commas, quotes, non-ASCII), else `address` as configured."""
    name = _one_line(display_name or "")
    if not name:
        return address
    return Address(display_name=name, addr_spec=parseaddr(address)[1] or address)


def build_email(msg: OutgoingMessage, *, from_address: str, message_id_domain: str,
                one_click_unsubscribe_url: str | None = None,
                unsubscribe_mailto: str | None = None) -> EmailMessage:
    """The email for one outgoing message. Raises ValueError for an unsendable message.

    Subject is used as given (the caller adds "Re: "). References gets In-Reply-To appended when
    the caller passed only the parent's References. Unsubscribe headers go on marketing mail
    (URL from the message or `one_click_unsubscribe_url`, plus `unsubscribe_mailto`), and on other
    mail only when the message itself names a `list_unsubscribe_url`.
    """
    email = EmailMessage(policy=SMTP_POLICY)
    email["Message-ID"] = make_msgid(domain=message_id_domain)
    email["Date"] = format_datetime(datetime.now(UTC))
    email["From"] = _from_header(msg.sender or from_address, msg.sender_name)
    email["To"] = msg.to
    if msg.subject:
        email["Subject"] = _one_line(msg.subject)
    if msg.in_reply_to:
        email["In-Reply-To"] = _bracket(msg.in_reply_to)
    references = list(dict.fromkeys(_bracket(r) for r in msg.references if r.strip()))
    if msg.in_reply_to and _bracket(msg.in_reply_to) not in references:
        references.append(_bracket(msg.in_reply_to))
    if references:
        email["References"] = " ".join(references)
    if msg.reply_to:
        email["Reply-To"] = msg.reply_to
    for name, value in {**_unsubscribe_headers(msg, one_click_unsubscribe_url, unsubscribe_mailto),
                        **outbound_loop_headers(msg.purpose)}.items():
        email[name] = value
    text = email_text(msg)
    html = _with_extras(msg.html, _html_extras(msg)) if msg.html else text_to_html(text)
    email.set_content(text, cte="quoted-printable")
    email.add_alternative(html, subtype="html", cte="quoted-printable")
    return email


def email_bytes(email: EmailMessage) -> bytes:
    """The wire form (CRLF line ends, 7-bit safe headers, ids folded between ids)."""
    return email.as_bytes(policy=SMTP_POLICY)
