"""Raw MIME fixtures -> Inbound: one captured-shape mail per test."""
from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest

from gateway.channels.email import iter_attachment_payloads, parse_mime
from gateway.channels.email.headers import decode_header_value
from gateway.channels.errors import PayloadError
from gateway.domain.types import Channel

TOKEN_ADDRESS = "reply+1c-abcdefghijklmnop@reply.example.com"


def test_gmail_multipart_reply(fixture_bytes):
    msg = parse_mime(fixture_bytes("gmail__reply_multipart_alternative.eml"),
                     envelope_from="ana.souza@gmail.com", envelope_to=[TOKEN_ADDRESS],
                     reply_domain="REPLY.example.com")
    assert msg.channel is Channel.EMAIL and msg.provider == "smtp"
    assert msg.provider_message_id == "CAF=qVx8fQ2vNuJ3x_kZp0W2eTqz7+T1ZgYp3ojQ4HK1bX9mQ@mail.gmail.com"
    assert msg.sender == "ana.souza@gmail.com"
    assert msg.profile_name == "Ana Souza Gonçalves"
    assert msg.recipient == TOKEN_ADDRESS
    assert msg.subject == "Re: Your order — délivraison"
    assert msg.text == "Yes please, deliver it on Tuesday. Thanks!"
    assert "> Hello Ana, when should we deliver your order?" in msg.full_text
    assert msg.html.startswith('<div dir="ltr">Yes please')
    assert msg.in_reply_to == "170469000012.4242.1234567890@gateway.example.com"
    assert msg.references == ("170469000012.4242.1234567890@gateway.example.com",)
    assert msg.thread_token == "1c-abcdefghijklmnop"
    assert msg.received_at == datetime(2024, 1, 8, 10, 15, 31, tzinfo=UTC)
    assert msg.auto_generated is False


def test_thread_token_needs_matching_reply_domain(fixture_bytes):
    raw = fixture_bytes("gmail__reply_multipart_alternative.eml")
    assert parse_mime(raw, reply_domain="other.example.com").thread_token is None
    assert parse_mime(raw).thread_token is None
    # Found in To and Delivered-To even without the envelope
    assert parse_mime(raw, reply_domain="reply.example.com").thread_token == "1c-abcdefghijklmnop"


def test_html_only_mail_is_reduced_to_safe_text_and_quote_stripped(fixture_bytes):
    msg = parse_mime(fixture_bytes("html_only__gmail_quote.eml"))
    assert msg.text == ("The printer still shows error 42 & won’t start.\n\n"
                        "See this photo (https://example.net/photo.jpg).")
    assert "alert" not in msg.full_text and "color: red" not in msg.full_text
    assert msg.full_text.endswith("> Is the printer working now?")
    assert "<script>" in msg.html   # the original is kept as received, never rendered by us
    assert msg.in_reply_to == "170470000000.1.1@gateway.example.com"


def test_outlook_windows1252_reply_cut_at_header_block(fixture_bytes):
    msg = parse_mime(fixture_bytes("outlook__reply_windows1252.eml"))
    assert msg.profile_name == "Jürgen Weber"
    assert msg.sender == "j.weber@contoso.example"
    assert msg.text == "Hi,\n\nThat’s fine – please charge the €25 fee to my card.\n\nRegards,\nJürgen"
    assert "From: Acme Support" in msg.full_text


def test_latin1_8bit_flowed_french_attribution(fixture_bytes):
    msg = parse_mime(fixture_bytes("thunderbird__latin1_8bit_french.eml"))
    assert msg.subject == "Re: Votre réservation"
    assert msg.profile_name == "Renée Lefèvre"
    assert msg.text == "Bonjour, oui, ça me convient très bien. Merci\u00a0!"   # flowed lines joined
    assert "a écrit" in msg.full_text


def test_iso_2022_jp(fixture_bytes):
    msg = parse_mime(fixture_bytes("japanese__iso2022jp.eml"))
    assert msg.subject == "Re: 予約の確認"
    assert msg.profile_name == "山田 太郎"
    assert msg.text == "ありがとうございます。明日の10時でお願いします。"


def test_wrong_charset_raw_utf8_header_no_message_id_no_date(fixture_bytes):
    raw = fixture_bytes("broken__wrong_charset_no_message_id.eml")
    msg = parse_mime(raw)
    assert msg.subject == "Fråga om leverans"
    assert msg.profile_name == "Zoë Ångström"
    assert msg.text == "Hej! När kommer paketet? Tack så mycket."
    assert msg.provider_message_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert parse_mime(raw).provider_message_id == msg.provider_message_id   # resend dedupes
    assert abs((datetime.now(UTC) - msg.received_at).total_seconds()) < 60


def test_attachments_with_non_ascii_names_and_payloads(fixture_bytes):
    raw = fixture_bytes("apple__attachments_non_ascii_names.eml")
    msg = parse_mime(raw)
    assert msg.text == "Here are the invoice, the photo and the list."   # footer stripped
    names = [(a.filename, a.content_type) for a in msg.attachments]
    assert names == [("Rechnung März.pdf", "application/pdf"),            # RFC 2231
                     ("foto_plage_été.png", "image/png"),                  # RFC 2047 in quotes
                     ("Übersicht.csv", "text/csv")]                        # raw 8-bit UTF-8
    payloads = list(iter_attachment_payloads(raw))
    assert [ref for ref, _ in payloads] == [a.content_ref for a in msg.attachments]
    pdf = payloads[0][1]
    assert pdf.startswith(b"%PDF-1.4") and msg.attachments[0].size == len(pdf)
    assert msg.attachments[0].content_ref == "sha256:" + hashlib.sha256(pdf).hexdigest()
    assert payloads[2][1].decode() == "name;amount\nCafé;3,50\n"


def test_out_of_office_is_auto_generated(fixture_bytes):
    msg = parse_mime(fixture_bytes("outlook__out_of_office.eml"))
    assert msg.auto_generated is True
    assert msg.in_reply_to == "170469000012.4242.1234567890@gateway.example.com"


def test_dsn_bounce_reports_the_original_message(fixture_bytes):
    msg = parse_mime(fixture_bytes("bounce__dsn_user_unknown.eml"), envelope_from="")
    assert msg.auto_generated is True
    assert msg.sender == "mailer-daemon@mx.example.com"
    report = msg.extra["report"]
    assert report["type"] == "delivery-status"
    assert report["original_message_id"] == "170470985912.99.4242@gateway.example.com"
    assert report["recipients"] == [{
        "recipient": "nobody@example.org", "action": "failed", "status": "5.1.1",
        "diagnostic": "smtp; 550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown"}]
    assert [a.content_type for a in msg.attachments] == ["message/rfc822"]


def test_bulk_mail_is_auto_generated(fixture_bytes):
    msg = parse_mime(fixture_bytes("newsletter__precedence_bulk.eml"))
    assert msg.auto_generated is True
    assert msg.text == "Deals\n\n50% off everything."


def test_sender_falls_back_to_envelope():
    msg = parse_mime(b"Subject: hi\r\n\r\nhello\r\n", envelope_from="Someone@Example.org")
    assert msg.sender == "someone@example.org"
    assert msg.text == "hello"


@pytest.mark.parametrize("raw", [b"", b"   \r\n", b"Subject: no sender\r\n\r\nbody", b"\x00\xff\xfe garbage"])
def test_not_an_email_is_a_payload_error(raw):
    with pytest.raises(PayloadError):
        parse_mime(raw)


def test_hostile_headers_never_crash():
    raw = (b"From: \"unterminated <a@b.c\r\nTo: ,,,<>,@,\r\nSubject: =?x-unknown?B?!!!?= =?utf-8?Q?ok?=\r\n"
           b"Date: Mon, 99 Foo 2024 99:99:99 +9999\r\nMessage-ID: <>\r\nReferences: <a> junk <b@c>\r\n"
           b"Content-Type: multipart/mixed; boundary=\"never\"\r\n\r\nno boundary here\xff\r\n")
    msg = parse_mime(raw)
    assert msg.sender == "a@b.c"
    assert msg.subject.endswith("ok")
    assert msg.references == ("a", "b@c")


@pytest.mark.parametrize("value, expected", [
    ("=?utf-8?Q?caf=C3?= =?utf-8?Q?=A9?= au lait", "café au lait"),   # character split over two words
    ("=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?= c", "ab c"),               # whitespace between words dropped
    ("=?utf-8*en?B?w6k=?=", "é"),                                       # RFC 2231 language tag
    ("=?unknown-charset?Q?caf=E9?=", "café"),                           # unknown charset: best effort
    ("Plain\r\n folded", "Plain folded"),
])
def test_decode_header_value(value, expected):
    assert decode_header_value(value) == expected
