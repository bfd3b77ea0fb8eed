"""SendGrid Inbound Parse and Mailgun forward() posts, through a real aiohttp server and read_form."""
from __future__ import annotations

import hashlib

import pytest

from gateway.channels.email import (UploadedFile, iter_webhook_payloads, parse_mailgun, parse_sendgrid,
                                    verify_mailgun_signature)
from gateway.channels.errors import PayloadError
from gateway.domain.types import Channel

SENDGRID_TYPE = "multipart/form-data; boundary=xYzZY"
MAILGUN_MULTIPART_TYPE = "multipart/form-data; boundary=2f8a3b9c4d5e6f708192a3b4c5d6e7f8"


async def test_sendgrid_default_mode_with_attachment(post_form, fixture_bytes):
    fields, files = await post_form(fixture_bytes("sendgrid__default_mode_attachment.multipart"),
                                    SENDGRID_TYPE)
    msg = parse_sendgrid(fields, files, reply_domain="reply.example.com")
    assert (msg.channel, msg.provider) == (Channel.EMAIL, "sendgrid")
    assert msg.provider_message_id == "CAHw9x=sendgrid-default-0001@mail.gmail.com"
    assert msg.sender == "jose.garcia@example.es"
    assert msg.profile_name == "José García"
    assert msg.subject == "Re: Factura pequeña"
    # text and html were posted in iso-8859-1, as the charsets field says
    assert msg.text == "Adjunto la factura. ¿Está bien así?"
    assert "escribió:" in msg.full_text
    assert msg.html == "<div>Adjunto la factura. ¿Está bien así?</div>"
    assert msg.in_reply_to == "170488000000.11.22@gateway.example.com"
    assert msg.references == ("170487000000.11.21@gateway.example.com",
                              "170488000000.11.22@gateway.example.com")
    assert msg.thread_token == "1c-abcdefghijklmnop"
    assert msg.extra["sendgrid"]["SPF"] == "pass"
    [att] = msg.attachments
    assert (att.filename, att.content_type) == ("factura_año.pdf", "application/pdf")
    [(ref, data)] = list(iter_webhook_payloads(fields, files))
    assert data.startswith(b"%PDF") and ref == att.content_ref == "sha256:" + hashlib.sha256(data).hexdigest()


async def test_sendgrid_raw_mode_delegates_to_mime(post_form, fixture_bytes):
    fields, files = await post_form(fixture_bytes("sendgrid__raw_mode.multipart"), SENDGRID_TYPE)
    assert files == []
    msg = parse_sendgrid(fields, files)
    assert msg.provider == "sendgrid"
    assert msg.provider_message_id == "AB12CD34-5678-90EF-1234-567890ABCDEF@example.de"
    assert msg.text == "Here are the invoice, the photo and the list."
    assert [a.filename for a in msg.attachments] == ["Rechnung März.pdf", "foto_plage_été.png",
                                                     "Übersicht.csv"]
    assert [r for r, _ in iter_webhook_payloads(fields, files)] == [a.content_ref for a in msg.attachments]
    assert msg.extra["envelope"] == {"from": "joerg@example.de", "to": ["support@example.com"]}


def test_sendgrid_str_fields_and_missing_sender():
    fields = {"from": "Bob <bob@example.com>", "to": "support@example.com", "subject": "Hi",
              "text": "Hello there", "envelope": '{"to":["support@example.com"],"from":"bob@example.com"}'}
    msg = parse_sendgrid(fields, [])
    assert (msg.sender, msg.text, msg.subject) == ("bob@example.com", "Hello there", "Hi")
    assert msg.provider_message_id.startswith("sha256:")
    assert parse_sendgrid(dict(fields), []).provider_message_id == msg.provider_message_id
    with pytest.raises(PayloadError):
        parse_sendgrid({"text": "orphan"}, [])
    with pytest.raises(PayloadError):
        parse_sendgrid({**fields, "envelope": "{not json"}, [])


async def test_mailgun_urlencoded_prefers_stripped_text(post_form, fixture_bytes):
    fields, files = await post_form(fixture_bytes("mailgun__stripped_text.urlencoded"),
                                    "application/x-www-form-urlencoded")
    assert verify_mailgun_signature(fields["timestamp"], fields["token"], fields["signature"],
                                    "key-test-signing-0123456789", max_age=None)
    msg = parse_mailgun(fields, files, reply_domain="reply.example.com")
    assert msg.provider == "mailgun"
    assert msg.provider_message_id == "CAJ8mailgun-0001@mail.gmail.com"
    assert msg.sender == "mika.virtanen@example.fi"
    assert msg.text == "Thursday at 3pm works for me."
    assert msg.full_text.startswith("Thursday at 3pm works for me.\n\nMika\n--")
    assert msg.in_reply_to == "170488100000.5.6@gateway.example.com"
    assert msg.references[-1] == "170488100000.5.6@gateway.example.com"
    assert msg.thread_token == "1c-abcdefghijklmnop"
    assert msg.recipient == "reply+1c-abcdefghijklmnop@reply.example.com"


async def test_mailgun_multipart_with_attachments(post_form, fixture_bytes):
    fields, files = await post_form(fixture_bytes("mailgun__attachments.multipart"), MAILGUN_MULTIPART_TYPE)
    msg = parse_mailgun(fields, files)
    assert msg.profile_name == "Søren Kierkegaard"
    assert msg.text == "Two photos attached."
    assert [(a.filename, a.content_type, a.size) for a in msg.attachments] == [
        ("skade_1.png", "image/png", 66), ("rapport før.pdf", "application/pdf", 15)]
    payloads = dict(iter_webhook_payloads(fields, files))
    assert payloads[msg.attachments[1].content_ref] == b"%PDF-1.4\n%%EOF\n"


def test_mailgun_without_stripped_text_strips_quotes_itself():
    fields = {"from": "Kim <kim@example.com>", "sender": "kim@example.com", "recipient": "support@example.com",
              "subject": "Re: x", "body-plain": "Fine.\n\nOn Mon, Jan 8, 2024 at 9:00 AM A <a@b.c> wrote:\n> ?",
              "Message-Id": "<kim-1@example.com>", "message-headers": "[]"}
    msg = parse_mailgun(fields, [])
    assert (msg.text, msg.provider_message_id) == ("Fine.", "kim-1@example.com")


def test_mailgun_raw_mime_field(fixture_bytes):
    raw = fixture_bytes("outlook__out_of_office.eml")
    msg = parse_mailgun({"body-mime": raw.decode(), "sender": "pat.doe@contoso.example",
                         "recipient": "reply+1c-abcdefghijklmnop@reply.example.com"}, [],
                        reply_domain="reply.example.com")
    assert msg.provider == "mailgun" and msg.auto_generated
    assert msg.provider_message_id == "oof-8a7b6c5d@contoso.example"
    assert msg.thread_token == "1c-abcdefghijklmnop"


def test_uploaded_file_is_frozen():
    f = UploadedFile("attachment1", "a.txt", "text/plain", b"x")
    with pytest.raises(AttributeError):
        f.data = b"y"
