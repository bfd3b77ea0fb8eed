"""Real SMTP on localhost: smtplib -> InboundSmtpServer, SmtpSender -> FakeSmtpRelay."""
from __future__ import annotations

import asyncio
import smtplib
import socket
from email.message import EmailMessage
from email.policy import SMTP

import aiosmtplib
import pytest

from gateway.channels.email import InboundSmtpServer, SmtpSender, classify_smtp_error, parse_mime
from gateway.devtools.fakes.smtp import FakeSmtpRelay
from gateway.domain.types import Button, Channel, OutgoingMessage, Purpose, SendOutcome


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _deliver(port: int, raw: bytes, mail_from: str, rcpt: list[str]) -> dict:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        return client.sendmail(mail_from, rcpt, raw)


def _customer_mail(**headers: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Ana <ana@example.com>"
    msg["To"] = "support@example.com"
    msg["Subject"] = "Olá"
    msg["Message-ID"] = "<ana-1@example.com>"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content("Quero mudar o endereço.\n\n.leading dot line\n")
    return msg.as_bytes(policy=SMTP)   # CRLF, as MTAs send it


# --- inbound listener ---------------------------------------------------------------------------

async def test_listener_accepts_only_after_callback_returned():
    got = []

    async def on_message(raw: bytes, mail_from: str, rcpt_tos: list[str]) -> None:
        await asyncio.sleep(0.05)   # still in the SMTP transaction: the client waits for us
        got.append((raw, mail_from, rcpt_tos))

    server = InboundSmtpServer(on_message, port=0)
    port = await server.start()
    try:
        raw = _customer_mail()
        refused = await asyncio.to_thread(_deliver, port, raw, "ana@example.com",
                                          ["reply+1c-x@reply.example.com", "support@example.com"])
        assert refused == {}
        [(body, mail_from, rcpt_tos)] = got
        assert mail_from == "ana@example.com"
        assert rcpt_tos == ["reply+1c-x@reply.example.com", "support@example.com"]
        parsed = parse_mime(body, envelope_from=mail_from, envelope_to=rcpt_tos, reply_domain="reply.example.com")
        assert parsed.provider_message_id == "ana-1@example.com"
        assert parsed.text == "Quero mudar o endereço.\n\n.leading dot line"   # dot-unstuffed
        assert parsed.thread_token == "1c-x"
    finally:
        await server.stop()


async def test_listener_local_error_is_451_and_payload_error_is_550():
    async def broken(raw: bytes, mail_from: str, rcpt_tos: list[str]) -> None:
        raise RuntimeError("database down")

    async with InboundSmtpServer(broken, port=0) as server:
        with pytest.raises(smtplib.SMTPDataError) as exc:
            await asyncio.to_thread(_deliver, server.port, _customer_mail(), "a@b.c", ["s@example.com"])
        assert exc.value.smtp_code == 451
        assert b"local error" in exc.value.smtp_error

    async def strict(raw: bytes, mail_from: str, rcpt_tos: list[str]) -> None:
        parse_mime(b"Subject: nobody\r\n\r\nx", envelope_from=None)

    async with InboundSmtpServer(strict, port=0) as server:
        with pytest.raises(smtplib.SMTPDataError) as exc:
            await asyncio.to_thread(_deliver, server.port, _customer_mail(), "a@b.c", ["s@example.com"])
        assert exc.value.smtp_code == 550
        assert b"without a sender" in exc.value.smtp_error


async def test_listener_enforces_max_size():
    async def on_message(raw, mail_from, rcpt_tos):
        raise AssertionError("must not be called")

    async with InboundSmtpServer(on_message, port=0, max_message_size=1000) as server:
        big = _customer_mail() + b"x" * 5000
        with pytest.raises(smtplib.SMTPException):
            await asyncio.to_thread(_deliver, server.port, big, "a@b.c", ["s@example.com"])


async def test_stop_closes_open_connections():
    async def on_message(raw, mail_from, rcpt_tos):
        pass

    server = InboundSmtpServer(on_message, port=0)
    port = await server.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert (await reader.readline()).startswith(b"220")
    await asyncio.wait_for(server.stop(), 5)
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


# --- outbound sender ----------------------------------------------------------------------------

def _sender(port: int, **kwargs) -> SmtpSender:
    return SmtpSender(hostname="127.0.0.1", port=port, from_address="Acme Suporte <support@example.com>",
                      message_id_domain="gw.example.com", timeout=5, **kwargs)


def _outgoing(**kwargs) -> OutgoingMessage:
    base = {"message_id": 7, "channel": Channel.EMAIL, "to": "ana@example.com", "text": "Olá Ana!",
            "subject": "Re: Olá"}
    return OutgoingMessage(**{**base, **kwargs})


async def test_sender_delivers_with_threading_headers_and_auth():
    async with FakeSmtpRelay(credentials=("gw", "pa55")) as relay:
        sender = _sender(relay.port, username="gw", password="pa55")
        result = await sender.send(_outgoing(
            in_reply_to="ana-1@example.com", references=("root@example.com",),
            reply_to="reply+1c-x@reply.example.com", buttons=(Button("a", "Sim"), Button("b", "Não"))))
        assert result.outcome is SendOutcome.SENT and result.status == "sent"
        [delivered] = relay.messages
        assert delivered.auth_user == "gw"
        assert delivered.mail_from == "support@example.com"
        assert delivered.rcpt_tos == ("ana@example.com",)
        msg = delivered.message
        assert msg["Message-ID"] == f"<{result.provider_message_id}>"
        assert result.provider_message_id.endswith("@gw.example.com")
        assert msg["In-Reply-To"] == "<ana-1@example.com>"
        assert msg["References"] == "<root@example.com> <ana-1@example.com>"
        assert msg["Reply-To"] == "reply+1c-x@reply.example.com"
        assert msg["From"] == "Acme Suporte <support@example.com>"
        assert msg["List-Unsubscribe"] is None and msg["List-Unsubscribe-Post"] is None
        assert msg.get_content_type() == "multipart/alternative"
        plain = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")
        html = msg.get_body(("html",)).get_content()
        assert "Olá Ana!" in plain and "1. Sim\n2. Não" in plain
        assert "Olá Ana!" in html and "<br>" in html
        assert "pa55" not in repr(sender)


async def test_marketing_mail_gets_one_click_unsubscribe():
    async with FakeSmtpRelay() as relay:
        sender = _sender(relay.port, unsubscribe_url_for=lambda m: f"https://u.example.com/u/{m.message_id}",
                         unsubscribe_mailto="unsub@example.com")
        assert (await sender.send(_outgoing(purpose=Purpose.MARKETING, subject="Promo"))).outcome is SendOutcome.SENT
        assert (await sender.send(_outgoing(purpose=Purpose.TRANSACTIONAL))).outcome is SendOutcome.SENT
        marketing, transactional = (d.message for d in relay.messages)
        assert marketing["List-Unsubscribe"] == "<https://u.example.com/u/7>, <mailto:unsub@example.com>"
        assert marketing["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert transactional["List-Unsubscribe"] is None
        assert transactional["List-Unsubscribe-Post"] is None


async def test_marketing_without_unsubscribe_fails_permanently():
    async with FakeSmtpRelay() as relay:
        result = await _sender(relay.port).send(_outgoing(purpose=Purpose.MARKETING))
        assert result.outcome is SendOutcome.FAILED and result.error_code == "invalid_message"
        assert relay.messages == []


@pytest.mark.parametrize("stage", ["data", "rcpt"])
async def test_temporary_reply_is_retry_and_permanent_is_failed(stage):
    async with FakeSmtpRelay() as relay:
        sender = _sender(relay.port)
        fail = relay.fail_next_data if stage == "data" else relay.fail_next_rcpt
        fail(451, "4.7.1 Greylisted, please try again later")
        result = await sender.send(_outgoing())
        assert result.outcome is SendOutcome.RETRY
        assert result.error_code == "451" and "Greylisted" in result.error_message

        fail(550, "5.1.1 No such user here")
        result = await sender.send(_outgoing())
        assert result.outcome is SendOutcome.FAILED
        assert result.error_code == "550" and "No such user" in result.error_message

        assert (await sender.send(_outgoing())).outcome is SendOutcome.SENT
        assert len(relay.messages) == 1


async def test_relay_down_or_bad_credentials_is_retry():
    result = await _sender(_free_port()).send(_outgoing())
    assert result.outcome is SendOutcome.RETRY and result.error_code == "connection"
    async with FakeSmtpRelay(credentials=("gw", "right")) as relay:
        result = await _sender(relay.port, username="gw", password="wrong").send(_outgoing())
        assert result.outcome is SendOutcome.RETRY and result.error_code == "535"
        assert relay.messages == []


async def test_three_message_reply_chain_threads():
    """customer -> our reply -> customer reply: In-Reply-To/References follow the Message-IDs."""
    async with FakeSmtpRelay() as relay:
        first = parse_mime(_customer_mail())
        ours = await _sender(relay.port).send(_outgoing(
            in_reply_to=first.provider_message_id, references=first.references))
        sent = relay.messages[0].message
        assert sent["In-Reply-To"] == "<ana-1@example.com>"
        assert sent["References"] == "<ana-1@example.com>"

        # The customer's client answers our mail the RFC 5322 way.
        reply = _customer_mail(In_Reply_To=sent["Message-ID"],
                               References=f"{sent['References']} {sent['Message-ID']}")
        reply = reply.replace(b"<ana-1@example.com>\r\n", b"<ana-2@example.com>\r\n", 1)
        third = parse_mime(reply)
        assert third.provider_message_id == "ana-2@example.com"
        assert third.in_reply_to == ours.provider_message_id
        assert third.references == ("ana-1@example.com", ours.provider_message_id)


async def test_invalid_recipient_fails_without_connecting():
    result = await _sender(_free_port()).send(_outgoing(to="not-an-address"))
    assert result.outcome is SendOutcome.FAILED and result.error_code == "invalid_message"


def test_mixed_recipient_refusals_retry_when_any_is_temporary():
    refused = aiosmtplib.SMTPRecipientsRefused([
        aiosmtplib.SMTPRecipientRefused(550, "5.1.1 unknown", "a@x"),
        aiosmtplib.SMTPRecipientRefused(452, "4.2.2 mailbox full", "b@x")])
    result = classify_smtp_error(refused)
    assert (result.outcome, result.error_code) == (SendOutcome.RETRY, "452")
    assert classify_smtp_error(aiosmtplib.SMTPServerDisconnected("gone")).outcome is SendOutcome.RETRY
    assert classify_smtp_error(aiosmtplib.SMTPReadTimeoutError("slow")).error_code == "timeout"


async def test_null_sender_bounce_reaches_the_callback_as_empty_mail_from(fixture_bytes):
    got = []

    async def on_message(raw, mail_from, rcpt_tos):
        got.append(parse_mime(raw, envelope_from=mail_from, envelope_to=rcpt_tos))

    async with InboundSmtpServer(on_message, port=0) as server:
        raw = fixture_bytes("bounce__dsn_user_unknown.eml")
        await asyncio.to_thread(_deliver, server.port, raw, "<>", ["bounces@gateway.example.com"])
    [bounce] = got
    assert bounce.extra["envelope"]["from"] == ""
    assert bounce.auto_generated and bounce.extra["report"]["recipients"][0]["status"] == "5.1.1"


async def test_listener_refuses_foreign_recipients():
    got = []

    async def on_message(raw, mail_from, rcpt_tos):
        got.append(rcpt_tos)

    def ours(address: str) -> bool:
        return address.lower().endswith("@reply.example.com")

    async with InboundSmtpServer(on_message, port=0, accept_recipient=ours) as server:
        refused = await asyncio.to_thread(_deliver, server.port, _customer_mail(), "a@b.c",
                                          ["reply+1-x@REPLY.example.com", "someone@elsewhere.example"])
        assert refused == {"someone@elsewhere.example": (550, b"5.1.1 No such mailbox here")}
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            await asyncio.to_thread(_deliver, server.port, _customer_mail(), "a@b.c", ["x@elsewhere.example"])
    assert got == [["reply+1-x@REPLY.example.com"]]
