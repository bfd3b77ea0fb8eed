"""build_email: the headers and parts of outgoing mail, checked on the serialized bytes."""
from __future__ import annotations

import email
import re
from email.policy import default

import pytest

from gateway.channels.email import build_email, email_bytes
from gateway.domain.types import Attachment, Button, Channel, OutgoingMessage, Purpose

GMAIL_ID = "CAKxQ7yTHeyXbL1fw0k3vzwJDSkPZ0Jq2i-LV6tN3ZrBq9cVQ+w_aVeryLongLocalPart1234567890@mail.gmail.com"


def _build(**kwargs) -> tuple[bytes, email.message.EmailMessage]:
    options = {k: kwargs.pop(k) for k in ("one_click_unsubscribe_url", "unsubscribe_mailto") if k in kwargs}
    msg = OutgoingMessage(**{"message_id": 1, "channel": Channel.EMAIL, "to": "ana@example.com",
                             "text": "Hello", **kwargs})
    raw = email_bytes(build_email(msg, from_address="Café Support <support@example.com>",
                                  message_id_domain="gw.example.com", **options))
    return raw, email.message_from_bytes(raw, policy=default)


def test_non_ascii_headers_are_encoded_and_round_trip():
    raw, msg = _build(to="Zoë Ångström <zoe@example.se>", subject="Re: Café crème — très bien, " * 3)
    header_block = raw.split(b"\r\n\r\n", 1)[0]
    assert header_block.isascii()
    assert msg["From"] == "Café Support <support@example.com>"
    assert msg["To"] == "Zoë Ångström <zoe@example.se>"
    assert msg["Subject"] == ("Re: Café crème — très bien, " * 3).strip()
    assert all(len(line) <= 78 for line in header_block.split(b"\r\n"))


def test_long_message_ids_are_folded_between_ids_never_encoded():
    raw, msg = _build(in_reply_to=GMAIL_ID, references=("a@b", f"<{GMAIL_ID}>", "c@d"))
    header_block = raw.split(b"\r\n\r\n", 1)[0].decode()
    id_headers = re.findall(r"^(?:In-Reply-To|References):.*(?:\r\n[ \t].*)*", header_block, re.MULTILINE)
    assert len(id_headers) == 2 and all("=?" not in h for h in id_headers)
    assert all(len(line) <= 998 for h in id_headers for line in h.split("\r\n"))
    assert msg["In-Reply-To"] == f"<{GMAIL_ID}>"
    assert msg["References"] == f"<a@b> <{GMAIL_ID}> <c@d>"   # in_reply_to already present: not repeated
    assert f"<{GMAIL_ID}>".encode() in raw


def test_text_html_alternative_with_menu_and_attachment_links():
    _, msg = _build(text="Pick one <b>now</b>:", buttons=(Button("1", "Red"), Button("2", "Blue")),
                    attachments=(Attachment(url="https://cdn.example.com/f.pdf?a=1&b=2", filename="f.pdf"),))
    assert msg.get_content_type() == "multipart/alternative"
    plain = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")
    html = msg.get_body(("html",)).get_content()
    assert plain == "Pick one <b>now</b>:\n\n1. Red\n2. Blue\n\nf.pdf: https://cdn.example.com/f.pdf?a=1&b=2\n"
    assert "Pick one &lt;b&gt;now&lt;/b&gt;:" in html
    assert '<a href="https://cdn.example.com/f.pdf?a=1&amp;b=2">' in html


def test_caller_html_is_kept_and_gets_menu_and_links():
    _, msg = _build(html="<html><body><p>Hi!</p></body></html>", buttons=(Button("1", "Yes"),),
                    attachments=(Attachment(url="https://cdn.example.com/x.png", filename="x.png"),))
    html = msg.get_body(("html",)).get_content()
    assert html.startswith("<html><body><p>Hi!</p><ol><li>Yes</li></ol>")
    assert '<a href="https://cdn.example.com/x.png">x.png</a>' in html


def test_unsubscribe_headers_by_purpose():
    url = "https://u.example.com/u/tok"
    _, marketing = _build(purpose=Purpose.MARKETING, one_click_unsubscribe_url=url)
    assert marketing["List-Unsubscribe"] == f"<{url}>"
    assert marketing["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    _, mailto_only = _build(purpose=Purpose.MARKETING, unsubscribe_mailto="unsub@example.com")
    assert mailto_only["List-Unsubscribe"] == "<mailto:unsub@example.com>"
    assert mailto_only["List-Unsubscribe-Post"] is None          # RFC 8058 needs an HTTPS URI
    _, reply = _build(one_click_unsubscribe_url=url, unsubscribe_mailto="unsub@example.com")
    assert reply["List-Unsubscribe"] is None
    _, explicit = _build(purpose=Purpose.TRANSACTIONAL, list_unsubscribe_url=url)
    assert explicit["List-Unsubscribe"] == f"<{url}>"
    with pytest.raises(ValueError):
        _build(purpose=Purpose.MARKETING)


def test_loop_headers_and_sender_override():
    _, reply = _build(sender="agent@example.com", reply_to="reply+1-abc@reply.example.com")
    assert reply["From"] == "agent@example.com"
    assert reply["Reply-To"] == "reply+1-abc@reply.example.com"
    assert reply["X-Auto-Response-Suppress"] == "OOF, AutoReply"
    assert reply["Auto-Submitted"] is None
    _, transactional = _build(purpose=Purpose.TRANSACTIONAL)
    assert transactional["Auto-Submitted"] == "auto-generated"


def test_header_injection_is_refused():
    with pytest.raises(ValueError):
        _build(to="ana@example.com\r\nBcc: victim@example.com")
    _, msg = _build(subject="Hello\r\nBcc: victim@example.com")
    assert msg["Bcc"] is None and msg["Subject"] == "Hello Bcc: victim@example.com"
