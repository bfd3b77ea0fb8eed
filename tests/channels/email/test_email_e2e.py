"""Email end to end: smtplib into the SMTP listener, webhooks, replies through a local SMTP relay."""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import smtplib
import time
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import aiohttp
import pytest

from gateway.devtools.fakes.smtp import FakeSmtpRelay
from gateway.devtools.testing import free_port, running_gateway
from gateway.devtools.testing import smtp_deliver as deliver
from gateway.devtools.testing import wait_for
from gateway.domain import thread
from gateway.domain.types import Channel, Purpose

FIXTURES = Path(__file__).resolve().parent / "fixtures"
KEY = "email-webhook-key"
RELAY = "mx.support.example"   # the MX in front of the SMTP listener, which checks SPF/DKIM/DMARC
DOMAIN = "reply.example.com"


def email_settings(settings, relay_port, **kw):
    kw.setdefault("default_handler", "echo")
    return settings.with_(smtp_host="127.0.0.1", smtp_port=relay_port, smtp_tls="none",
                          email_from="support@example.com", email_reply_domain=DOMAIN, email_webhook_key=KEY,
                          smtp_listen_port=free_port(), email_trusted_authserv_ids=(RELAY,), **kw)


def mail(sender: str, to: str, subject: str, body: str, **headers) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    msg["Message-ID"] = make_msgid(domain="customer.example")
    msg["Authentication-Results"] = f"{RELAY}; dmarc=pass header.from={sender.rpartition('@')[2].rstrip('>')}"
    for k, v in headers.items():
        msg[k.replace("_", "-")] = v
    msg.set_content(body)
    return msg


async def api_conversation(url: str, email: str) -> int:
    """The conversation of a customer known by `email`, started through POST /api/v1/inbound."""
    async with aiohttp.ClientSession() as http:
        body = {"client_message_id": "x", "contact": {"email": email}, "text": "hi"}
        async with http.post(f"{url}/api/v1/inbound", json=body,
                             headers={"Authorization": "Bearer admin-test-token"}) as resp:
            assert resp.status in (200, 201), await resp.text()
            return (await resp.json())["conversation_id"]


async def relayed(relay, n, timeout=15):
    async def enough():
        return len(relay.messages) >= n
    await wait_for(enough, timeout=timeout, message=f"expected {n} relayed mails, got {len(relay.messages)}")
    return relay.messages


async def test_three_email_reply_chain_threads_and_replies_carry_headers(settings, pool, clean, redis_client):
    from gateway.channels.email.intake import start_smtp_listener

    async with FakeSmtpRelay(hostname="127.0.0.1") as relay:
        s = email_settings(settings, relay.port)
        async with running_gateway(s) as (rt, url):
            stop = await start_smtp_listener(rt)
            try:
                first = mail("Ana Pérez <Ana@Customer.example>", "support@example.com", "Order AB-12345", "Where is it?")
                await deliver(s.smtp_listen_port, first)
                reply1 = (await relayed(relay, 1))[0].message
                assert reply1["In-Reply-To"] == first["Message-ID"]
                assert reply1["Subject"] == "Re: Order AB-12345"
                reply_to = reply1["Reply-To"]
                assert reply_to.startswith("reply+") and reply_to.endswith("@" + DOMAIN)
                # the customer answers from another address of hers, to the tokened reply address
                second = mail("ana.work@company.example", reply_to, "Re: Order AB-12345",
                              "Still waiting.\n\nOn Mon, Jan 8, 2024 at 10:00 AM Ana Pérez <ana@customer.example> wrote:\n> Where is it?",
                              In_Reply_To=reply1["Message-ID"], References=f"{first['Message-ID']} {reply1['Message-ID']}")
                await deliver(s.smtp_listen_port, second)
                reply2 = (await relayed(relay, 2))[1].message
                assert reply2["In-Reply-To"] == second["Message-ID"]
                assert reply1["Message-ID"] in reply2["References"]
                # a third mail with no token, only In-Reply-To to our second reply
                third = mail("ana@customer.example", "support@example.com", "Re: Order AB-12345", "Thanks!",
                             In_Reply_To=reply2["Message-ID"])
                await deliver(s.smtp_listen_port, third)
                await relayed(relay, 3)
            finally:
                await stop()
    assert await pool.fetchval("SELECT count(*) FROM conversations") == 1
    rows = await pool.fetch("SELECT direction, body FROM messages ORDER BY seq")
    assert [r["direction"] for r in rows] == ["in", "out", "in", "out", "in", "out"]
    assert rows[2]["body"] == "Still waiting."  # the quoted part is stripped for the bot
    emails = {r["address"] for r in await pool.fetch("SELECT address FROM identities WHERE kind = 'email'")}
    assert emails == {"ana@customer.example", "ana.work@company.example"}
    assert "text/html" in {p.get_content_type() for p in relay.messages[0].message.walk()}


async def test_auto_replies_are_stored_but_never_answered(settings, pool, clean, redis_client):
    from gateway.channels.email.intake import start_smtp_listener

    async with FakeSmtpRelay(hostname="127.0.0.1") as relay:
        s = email_settings(settings, relay.port)
        async with running_gateway(s) as (rt, url):
            stop = await start_smtp_listener(rt)
            try:
                raw = (FIXTURES / "outlook__out_of_office.eml").read_bytes()
                await asyncio.to_thread(lambda: smtplib.SMTP("127.0.0.1", s.smtp_listen_port).sendmail(
                    "pat.doe@contoso.example", ["support@example.com"], raw))

                async def processed():
                    return await pool.fetchval("SELECT processed_at IS NOT NULL FROM messages WHERE direction = 'in'")
                await wait_for(processed)
                await asyncio.sleep(0.3)
            finally:
                await stop()
    assert relay.messages == []
    assert await pool.fetchval("SELECT content->>'event' FROM messages WHERE kind = 'event'") == "auto_generated_ignored"


async def test_sendgrid_needs_the_key_mailgun_needs_a_fresh_unreused_signature(settings, pool, clean, redis_client):
    async with FakeSmtpRelay(hostname="127.0.0.1") as relay:
        s = email_settings(settings, relay.port, default_handler="agent")
        async with running_gateway(s) as (rt, url):
            async with aiohttp.ClientSession() as http:
                sg = aiohttp.FormData({"from": "Bo <bo@example.org>", "to": "support@example.com", "subject": "Hi",
                                       "text": "Hello from SendGrid", "headers": "Message-ID: <sg-1@example.org>\n",
                                       "envelope": '{"to":["support@example.com"],"from":"bo@example.org"}'})
                async with http.post(f"{url}/webhooks/email/inbound", data=sg) as resp:
                    assert resp.status == 401
                async with http.post(f"{url}/webhooks/email/inbound?key={KEY}", data=sg) as resp:
                    assert resp.status == 200, await resp.text()
                ts, token = str(int(time.time())), "t" * 50
                sig = hmac.new(KEY.encode(), (ts + token).encode(), hashlib.sha256).hexdigest()
                mg = {"recipient": "support@example.com", "sender": "cy@example.org", "from": "cy@example.org",
                      "subject": "Yo", "body-plain": "Hello from Mailgun", "Message-Id": "<mg-1@example.org>",
                      "timestamp": ts, "token": token, "signature": sig,
                      "message-headers": '[["Message-Id", "<mg-1@example.org>"]]'}
                async with http.post(f"{url}/webhooks/email/inbound", data={**mg, "signature": "0" * 64}) as resp:
                    assert resp.status == 403
                stale_ts = str(int(time.time()) - 3600)
                stale_sig = hmac.new(KEY.encode(), (stale_ts + token).encode(), hashlib.sha256).hexdigest()
                async with http.post(f"{url}/webhooks/email/inbound",
                                     data={**mg, "timestamp": stale_ts, "signature": stale_sig}) as resp:
                    assert resp.status == 403
                for _ in range(2):  # Mailgun retrying the same message is fine
                    async with http.post(f"{url}/webhooks/email/inbound", data=mg) as resp:
                        assert resp.status == 200
                forged = {**mg, "Message-Id": "<other@example.org>", "body-plain": "forged",
                          "message-headers": '[["Message-Id", "<other@example.org>"]]'}
                async with http.post(f"{url}/webhooks/email/inbound", data=forged) as resp:
                    assert resp.status == 406  # the token was used for another message
    bodies = sorted(r["body"] for r in await pool.fetch("SELECT body FROM messages WHERE direction = 'in'"))
    assert bodies == ["Hello from Mailgun", "Hello from SendGrid"]


async def test_bounce_marks_our_message_undelivered_and_the_realtime_feed_hears_of_it(settings, pool, clean,
                                                                                      redis_client, http):
    from gateway.channels.email.intake import start_smtp_listener

    async with FakeSmtpRelay(hostname="127.0.0.1") as relay:
        s = email_settings(settings, relay.port)
        async with running_gateway(s) as (rt, url):
            stop = await start_smtp_listener(rt)
            feed = await http.ws_connect(f"{url}/api/v1/stream",
                                         headers={"Authorization": f"Bearer {s.admin_token}"})
            try:
                await deliver(s.smtp_listen_port, mail("dee@example.net", "support@example.com", "Q", "question"))
                ours = (await relayed(relay, 1))[0].message
                ours_id = await pool.fetchval("SELECT id FROM messages WHERE direction = 'out'")
                dsn = (FIXTURES / "bounce__dsn_user_unknown.eml").read_bytes().decode("utf-8", "replace")
                import re
                original = re.search(r"Message-ID:\s*(<[^>]+>)", dsn.split("message/rfc822", 1)[-1], re.I)
                if original:
                    dsn = dsn.replace(original.group(1), ours["Message-ID"])
                await asyncio.to_thread(lambda: smtplib.SMTP("127.0.0.1", s.smtp_listen_port).sendmail(
                    "", ["support@example.com"], dsn.encode()))

                async def bounced():
                    return await pool.fetchval("SELECT status FROM messages WHERE direction = 'out'") == "undelivered"
                await wait_for(bounced)
                while True:   # the agents' feed shows the bounce (events before it are the question and reply)
                    event = await feed.receive_json(timeout=10)
                    if event.get("type") == "message.status" and event.get("status") == "undelivered":
                        break
                assert event["message_id"] == ours_id and event["error_code"] == "bounce"
            finally:
                await feed.close()
                await stop()
    assert len(relay.messages) == 1  # the bounce itself is never answered


async def test_marketing_email_one_click_unsubscribe(settings, pool, clean, redis_client):
    async with FakeSmtpRelay(hostname="127.0.0.1") as relay:
        # RFC 8058 one-click needs an https link: the public URL is https, the test calls the local port
        s = email_settings(settings, relay.port, default_handler="agent", public_url="https://gw.example.test")
        async with running_gateway(s, roles=("http",)) as (rt, url):
            conv = await api_conversation(url, "eve@example.org")
            async with pool.acquire() as c, c.transaction():
                await thread.queue_outbound(c, conv, text="Spring sale!", author_type="journey",
                                            purpose=Purpose.MARKETING, channel=Channel.EMAIL, subject="Sale")
            await rt.outbox.send_due()
            sent = (await relayed(relay, 1))[0].message
            link = sent["List-Unsubscribe"].split(",")[0].strip("<> ")
            assert link.startswith("https://gw.example.test/unsubscribe/")
            assert sent["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
            path = link[link.index("/unsubscribe/"):]
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{url}{path}") as resp:      # prefetch: must not unsubscribe
                    assert resp.status == 200 and "Unsubscribe" in await resp.text()
                assert await pool.fetchval("SELECT count(*) FROM consents") == 0
                for _ in range(2):                                # idempotent, no redirect
                    async with http.post(f"{url}{path}", data={"List-Unsubscribe": "One-Click"},
                                         allow_redirects=False) as resp:
                        assert resp.status == 200
                async with http.post(f"{url}/unsubscribe/forged-token", data={}) as resp:
                    assert resp.status == 404
            async with pool.acquire() as c, c.transaction():
                with pytest.raises(thread.NoRoute) as no_route:
                    await thread.queue_outbound(c, conv, text="Another sale!", author_type="journey",
                                                purpose=Purpose.MARKETING, channel=Channel.EMAIL, subject="Sale 2")
                assert no_route.value.reasons == {"email": "no_marketing_consent"}
                await thread.queue_outbound(c, conv, text="Your receipt", author_type="system",
                                            purpose=Purpose.TRANSACTIONAL, channel=Channel.EMAIL, subject="Receipt")
            await rt.outbox.send_due()
            await relayed(relay, 2)
    assert [m.message["Subject"] for m in relay.messages] == ["Sale", "Receipt"]
    assert "List-Unsubscribe" not in relay.messages[1].message


async def test_email_attachments_are_stored_by_content_hash(settings, pool, clean, redis_client):
    from gateway.channels.email.intake import start_smtp_listener

    async with FakeSmtpRelay(hostname="127.0.0.1") as relay:
        s = email_settings(settings, relay.port, default_handler="agent")
        async with running_gateway(s) as (rt, url):
            stop = await start_smtp_listener(rt)
            try:
                msg = mail("fay@example.org", "support@example.com", "Photo", "See attached")
                msg.add_attachment(b"\x89PNG fake image bytes", maintype="image", subtype="png", filename="schäden.png")
                await deliver(s.smtp_listen_port, msg)
            finally:
                await stop()
    content = await pool.fetchval("SELECT content FROM messages WHERE direction = 'in'")
    att = content["attachments"][0]
    assert att["filename"] == "schäden.png" and att["content_type"] == "image/png"
    assert await pool.fetchval("SELECT data FROM blobs WHERE ref = $1", att["content_ref"]) == b"\x89PNG fake image bytes"


async def test_a_robot_mailing_us_in_a_loop_hits_the_reply_ceiling(settings, pool, clean, redis_client):
    """A mail loop with a robot that does not mark its mails as automatic stops at the ceiling."""
    from gateway.channels.email.intake import start_smtp_listener

    async with FakeSmtpRelay(hostname="127.0.0.1") as relay:
        s = email_settings(settings, relay.port, email_reply_ceiling=3)
        async with running_gateway(s) as (rt, url):
            stop = await start_smtp_listener(rt)
            try:
                for i in range(6):
                    await deliver(s.smtp_listen_port, mail("robot@example.net", "support@example.com",
                                                           f"Ticket {i}", f"Received your message {i}"))

                async def all_processed():
                    return await pool.fetchval("SELECT count(*) FROM messages WHERE direction = 'in' "
                                               "AND processed_at IS NOT NULL") == 6
                await wait_for(all_processed)
                await asyncio.sleep(0.5)
            finally:
                await stop()
    assert len(relay.messages) == 3
    assert await pool.fetchval("SELECT count(*) FROM messages WHERE content->>'event' = 'reply_ceiling'") == 3


async def test_outbound_mail_from_carries_the_agents_or_the_business_name(settings, pool, clean, redis_client):
    from email import message_from_bytes
    from email.policy import default

    from gateway.domain.types import Button

    async with FakeSmtpRelay(hostname="127.0.0.1") as relay:
        s = email_settings(settings, relay.port, default_handler="agent", email_from_name="Café Zoë")
        async with running_gateway(s, roles=("http",)) as (rt, url):
            conv = await api_conversation(url, "eve@example.org")
            agent = await pool.fetchval("INSERT INTO agents (name) VALUES ('Zoë O''Brien, Jr.') RETURNING id")
            async with pool.acquire() as c, c.transaction():
                await thread.queue_outbound(c, conv, text="I'm on it.", author_type="agent", author_id=agent,
                                            channel=Channel.EMAIL)
                menu_id = await thread.queue_outbound(c, conv, text="Did that help?", author_type="bot",
                                                      channel=Channel.EMAIL, buttons=(Button("y", "Yes"), Button("n", "No")))
            await rt.outbox.send_due()
            mails = await relayed(relay, 2)

            async def recorded():
                return await pool.fetchval("SELECT content->>'sent_text' FROM messages WHERE id = $1", menu_id)
            sent_text = await wait_for(recorded)
    raw_from = [message_from_bytes(m.raw)["From"] for m in mails]
    assert all(h.isascii() and "=?utf-8?" in h for h in raw_from)   # RFC 2047-encoded on the wire
    names = [(a.display_name, a.addr_spec) for m in mails
             for a in message_from_bytes(m.raw, policy=default)["From"].addresses]
    assert names == [("Zoë O'Brien, Jr. via Café Zoë", "support@example.com"), ("Café Zoë", "support@example.com")]
    assert all(m.mail_from == "support@example.com" for m in mails)
    # email, too, keeps what it sent: the words with the numbered menu
    assert sent_text == "Did that help?\n\n1. Yes\n2. No"
    assert sent_text in mails[1].message.get_body(("plain",)).get_content().replace("\r\n", "\n")
