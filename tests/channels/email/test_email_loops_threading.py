"""Loop safety markers, thread tokens and the Mailgun signature vector."""
from __future__ import annotations

import email
from email.policy import compat32

import pytest

from gateway.channels.email import (is_auto_generated, make_thread_token, parse_thread_token, reply_address,
                                    verify_mailgun_signature)
from gateway.channels.email.loops import outbound_loop_headers
from gateway.domain.types import Purpose


@pytest.mark.parametrize("headers", [
    {"Auto-Submitted": "auto-replied"},
    {"Auto-Submitted": "auto-generated; owner-email=\"x@y\""},
    {"Precedence": "bulk"}, {"Precedence": "Junk"}, {"Precedence": "list"}, {"Precedence": "auto_reply"},
    {"X-Autoreply": "yes"}, {"X-Autorespond": "Out of office"},
    {"X-Auto-Response-Suppress": "All"}, {"X-Auto-Response-Suppress": "DR, OOF, AutoReply"},
    {"Return-Path": "<>"},
    {"From": "MAILER-DAEMON@mx.example.com"}, {"From": "Mail System <postmaster@example.org>"},
    {"Content-Type": "multipart/report; report-type=delivery-status; boundary=x"},
    {"List-Id": "<news.shop.example>"}, {"List-Unsubscribe": "<mailto:u@x>"},
    {"Subject": "Automatic reply: Your order"}, {"Subject": "Réponse automatique : Votre commande"},
])
def test_auto_generated_markers(headers):
    assert is_auto_generated({"From": "pat@example.com", **headers} if "From" not in headers else headers)


@pytest.mark.parametrize("headers", [
    {"From": "pat@example.com", "Auto-Submitted": "no", "Subject": "Re: automatic replies are annoying"},
    {"From": "pat@example.com", "Precedence": "first-class"},
    {"From": "pat@example.com", "X-Auto-Response-Suppress": "DR, RN, NRN"},
    {"From": "pat@example.com", "Return-Path": "<pat@example.com>"},
])
def test_person_mail_is_not_auto_generated(headers):
    assert not is_auto_generated(headers)


def test_auto_generated_accepts_messages_pairs_and_null_envelope():
    msg = email.message_from_string("From: a@b.c\nAuto-Submitted: auto-replied\n\nx", policy=compat32)
    assert is_auto_generated(msg)
    assert is_auto_generated([["From", "a@b.c"], ["Precedence", "bulk"]])
    assert is_auto_generated({"From": "a@b.c"}, envelope_from="")
    assert not is_auto_generated({"From": "a@b.c"}, envelope_from="a@b.c")


def test_outbound_loop_headers():
    assert outbound_loop_headers(Purpose.REPLY) == {"X-Auto-Response-Suppress": "OOF, AutoReply"}
    assert outbound_loop_headers(Purpose.MARKETING)["Auto-Submitted"] == "auto-generated"


def test_thread_token_round_trip_and_tamper_detection():
    token = make_thread_token(4242, "s3cret")
    assert token == token.lower() and len(token) < 30
    assert all(ch.isalnum() or ch == "-" for ch in token)
    assert parse_thread_token(token, "s3cret") == 4242
    assert parse_thread_token(token.upper(), "s3cret") == 4242        # MTAs may change case
    assert parse_thread_token(token, "other-secret") is None
    id_part, mac = token.split("-")
    assert parse_thread_token(f"{int(id_part, 36) + 1:x}-{mac}", "s3cret") is None
    forged = make_thread_token(4243, "s3cret").split("-")[0] + "-" + mac
    assert parse_thread_token(forged, "s3cret") is None
    flipped = token[:-1] + ("a" if token[-1] != "a" else "b")
    assert parse_thread_token(flipped, "s3cret") is None
    for junk in ("", "-", "abc", "zz-", "é-abc", "x" * 200, None):
        assert parse_thread_token(junk, "s3cret") is None
    assert make_thread_token(0, "s") != make_thread_token(1, "s")
    assert reply_address(token, "reply.example.com") == f"reply+{token}@reply.example.com"


def test_mailgun_signature_vector():
    key, ts, token = "key-test-signing-0123456789", "1700000000", "a" * 50
    sig = "6648643519415b3f63442e4f9b1056702ca03d323f5e78e45b92bf10010a566a"
    assert verify_mailgun_signature(ts, token, sig, key, max_age=None)
    assert verify_mailgun_signature(ts, token, sig.upper(), key, max_age=None)
    assert verify_mailgun_signature(ts, token, sig, key, now=1700000300)
    assert not verify_mailgun_signature(ts, token, sig, key)                       # stale today
    assert not verify_mailgun_signature(ts, token, sig, key, now=1700000601)
    assert not verify_mailgun_signature(ts, token, sig, "other-key", max_age=None)
    assert not verify_mailgun_signature(ts, "b" * 50, sig, key, max_age=None)
    assert not verify_mailgun_signature("1700000001", token, sig, key, max_age=None)
    assert not verify_mailgun_signature(ts, token, "", key, max_age=None)
    assert not verify_mailgun_signature("soon", token, sig, key)
    assert not verify_mailgun_signature(ts, token, "é" * 64, key, max_age=None)
