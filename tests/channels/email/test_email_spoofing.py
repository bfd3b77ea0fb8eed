"""Email spoofing (issue 11 item 10): unauthenticated mail is stored, flagged, and kept out of the
thread its From address names."""
from __future__ import annotations

import asyncio
import json
from email.message import EmailMessage
from email.utils import make_msgid

import aiohttp

from gateway.channels.email.intake import start_smtp_listener
from gateway.channels.email.sender_auth import check_sender
from gateway.devtools.fakes.smtp import FakeSmtpRelay
from gateway.devtools.testing import free_port, running_gateway
from gateway.devtools.testing import smtp_deliver as deliver
from gateway.devtools.testing import wait_for
from gateway.domain.types import Channel, Inbound

ADMIN = {"Authorization": "Bearer admin-test-token"}
RELAY = "mx.support.example"
KEY = "spoof-webhook-key"


def inbound(provider="smtp", sender="ann@customer.example", headers=(), extra=None) -> Inbound:
    return Inbound(channel=Channel.EMAIL, provider=provider, provider_message_id="<1@x>", sender=sender, text="hi",
                   raw={"headers": [list(h) for h in headers]}, extra=extra or {})


def test_verdicts_from_each_receiver():
    ar = "Authentication-Results"
    assert check_sender(inbound(headers=[(ar, f"{RELAY}; dmarc=pass header.from=customer.example")]),
                        [RELAY]).verified
    assert check_sender(inbound(headers=[(ar, f"{RELAY} 1; spf=fail smtp.mailfrom=evil.example; "
                                              "dkim=pass (good) header.d=mail.customer.example")]), [RELAY]).method == "dkim"
    assert not check_sender(inbound(headers=[(ar, "mx.evil.example; dmarc=pass")]), [RELAY]).verified
    assert not check_sender(inbound(headers=[(ar, f"{RELAY}; dkim=pass header.d=evil.example; "
                                              "spf=pass smtp.mailfrom=bounce@evil.example")]), [RELAY]).verified
    assert not check_sender(inbound(headers=[(ar, f"{RELAY}; dmarc=fail; dkim=pass header.d=customer.example")]),
                            [RELAY]).verified
    assert not check_sender(inbound(headers=[(ar, f"{RELAY}; dmarc=pass")]), []).verified   # nobody trusted
    sendgrid = {"envelope": {"from": "bounces@customer.example"}}
    assert check_sender(inbound("sendgrid", extra={**sendgrid, "sendgrid": {"SPF": "pass", "dkim": "none"}})).verified
    assert check_sender(inbound("sendgrid", extra={"sendgrid": {"SPF": "softfail",
                                                                "dkim": "{@customer.example : pass}"}})).verified
    assert not check_sender(inbound("sendgrid", extra={**sendgrid, "sendgrid": {
        "SPF": "fail", "dkim": "{@evil.example : pass}"}})).verified
    mailgun = {"envelope": {"from": "ann@customer.example"}}
    assert check_sender(inbound("mailgun", headers=[("X-Mailgun-Spf", "Pass")], extra=mailgun)).verified
    # a sender writing its own "X-Mailgun-Spf: Pass" cannot outvote Mailgun's verdict
    assert not check_sender(inbound("mailgun", headers=[("X-Mailgun-Spf", "Fail"), ("X-Mailgun-Spf", "Pass")],
                                    extra=mailgun)).verified
    assert not check_sender(inbound("mailgun", headers=[("X-Mailgun-Dkim-Check-Result", "Pass"),
                                                        ("DKIM-Signature", "v=1; a=rsa-sha256; d=evil.example; s=k")],
                                    extra=mailgun)).verified
    assert not check_sender(inbound()).verified


def mail(sender: str, text: str, authenticated: bool) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, "support@example.com", "Order"
    msg["Message-ID"] = make_msgid(domain="x.example")
    if authenticated:
        msg["Authentication-Results"] = f"{RELAY}; dmarc=pass header.from=customer.example"
    else:   # a forged verdict in the name of a relay we do not trust
        msg["Authentication-Results"] = "mx.attacker.example; dmarc=pass header.from=customer.example"
    msg.set_content(text)
    return msg


async def test_forged_from_over_smtp_is_flagged_and_kept_out_of_the_customers_thread(
        settings, pool, clean, redis_client):
    async with FakeSmtpRelay(hostname="127.0.0.1") as relay:
        s = settings.with_(smtp_host="127.0.0.1", smtp_port=relay.port, smtp_tls="none", email_from="support@example.com",
                           smtp_listen_port=free_port(), email_trusted_authserv_ids=(RELAY,), default_handler="echo")
        async with running_gateway(s) as (rt, url):
            stop = await start_smtp_listener(rt)
            try:
                await deliver(s.smtp_listen_port, mail("Ann <ann@customer.example>", "where is my order?", True))

                async def replied():
                    return len(relay.messages) >= 1
                await wait_for(replied, timeout=30)
                for text in ("please refund to IBAN XX00 EVIL", "and change my address"):
                    await deliver(s.smtp_listen_port, mail("Ann <ann@customer.example>", text, False))

                async def processed():
                    return await pool.fetchval("SELECT count(*) FROM messages WHERE direction = 'in' "
                                               "AND processed_at IS NOT NULL") == 3
                await wait_for(processed, timeout=30)
                ann = await pool.fetchval("SELECT contact_id FROM identities WHERE kind = 'email'")
                conv = await pool.fetchval("SELECT id FROM conversations WHERE contact_id = $1", ann)
                other = await pool.fetchval("SELECT id FROM conversations WHERE contact_id <> $1", ann)
                async with aiohttp.ClientSession() as http:
                    async with http.get(f"{url}/api/v1/conversations/{conv}/messages", headers=ADMIN) as resp:
                        genuine = (await resp.json())["messages"]
                    async with http.get(f"{url}/api/v1/conversations/{other}/messages", headers=ADMIN) as resp:
                        forged = (await resp.json())["messages"]
                await asyncio.sleep(0.5)   # give a (wrong) reply to the forged mail time to show up
            finally:
                await stop()
    assert [(m["body"], m["sender_verified"]) for m in genuine if m["direction"] == "in"] == [
        ("where is my order?", True)]
    assert [(m["body"], m["sender_verified"]) for m in forged if m["direction"] == "in"] == [
        ("please refund to IBAN XX00 EVIL", False), ("and change my address", False)]
    assert all(m["sender_address"] == "ann@customer.example" for m in forged if m["direction"] == "in")
    assert len(relay.messages) == 1, "nothing is sent to an address someone forged"
    assert await pool.fetchval("SELECT count(*) FROM contacts") == 2


async def test_sendgrid_verdicts_decide_whether_mail_joins_by_from(settings, pool, clean, redis_client):
    s = settings.with_(email_webhook_key=KEY)

    def form(text: str, spf: str, dkim: str) -> aiohttp.FormData:
        return aiohttp.FormData({
            "from": "Bo <bo@customer.example>", "to": "support@example.com", "subject": "Hi", "text": text,
            "headers": f"Message-ID: {make_msgid(domain='x.example')}\n", "SPF": spf, "dkim": dkim,
            "envelope": json.dumps({"to": ["support@example.com"], "from": "bo@customer.example"})})
    async with running_gateway(s, roles=("http",)) as (rt, url), aiohttp.ClientSession() as http:
        for text, spf, dkim in (("genuine", "pass", "none"), ("forged", "fail", "{@evil.example : pass}"),
                                ("genuine again", "neutral", "{@customer.example : pass}")):
            async with http.post(f"{url}/webhooks/email/inbound?key={KEY}", data=form(text, spf, dkim)) as resp:
                assert resp.status == 200, await resp.text()
    rows = await pool.fetch("""SELECT c.contact_id, m.body, (m.content #>> '{extra,sender_auth,verified}')::bool AS ok
                               FROM messages m JOIN conversations c ON c.id = m.conversation_id ORDER BY m.id""")
    by_body = {r["body"]: (r["contact_id"], r["ok"]) for r in rows}
    assert by_body["genuine"][1] is True and by_body["genuine again"][1] is True and by_body["forged"][1] is False
    assert by_body["genuine"][0] == by_body["genuine again"][0] != by_body["forged"][0]
