"""One bad item never fails another (issue 11, item 1 and 3): every inbound item is checked and
cleaned before it joins an ingest batch, and a batch the database still refuses is retried item by
item. Real HTTP, WebSocket and SMTP against the real PostgreSQL and Redis."""
from __future__ import annotations

import asyncio
import json
import smtplib
import time

import aiohttp
import pytest

from gateway.channels.twilio.secrets import twilio_webhook_token
from gateway.channels.whatsapp.adapter import signature_header
from gateway.channels.whatsapp.secrets import whatsapp_app_secret
from gateway.devtools.simulate_providers import post_twilio_form, simulated_mailgun_form, twilio_inbound_params
from gateway.devtools.testing import free_port, running_gateway
from gateway.domain.inputs import InputError
from gateway.domain.types import Channel, Inbound
from gateway.pipeline import intake

KEY = "email-webhook-key"


async def _chat_tab(http: aiohttp.ClientSession, base: str):
    async with http.post(f"{base}/chat/session", json={}) as resp:
        token = (await resp.json())["token"]
    ws = await http.ws_connect(f"{base.replace('http', 'ws', 1)}/chat/ws")
    await ws.send_str(json.dumps({"type": "hello", "token": token}))
    while (await ws.receive_json(timeout=30))["type"] != "ready":
        pass
    return ws


async def _frames_until(ws, predicate, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        msg = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
        assert msg.type == aiohttp.WSMsgType.TEXT, f"socket closed: {msg.type} {ws.close_code}"
        frame = json.loads(msg.data)
        if predicate(frame):
            return frame


async def test_bad_chat_text_does_not_sink_concurrent_twilio_webhooks(settings, pool, clean, redis_client):
    """The attack of the issue: chat visitors send NUL and lone surrogates while many correctly
    signed Twilio webhooks arrive at once. Every good webhook is answered 200 and stored; each bad
    chat message gets an error frame naming why, and the visitor's socket stays open."""
    n_sms, bad_texts = 150, ["x\u0000y", "\ud800", "ok \udfff then"]
    async with running_gateway(settings, roles=("http",)) as (rt, base):
        token = twilio_webhook_token(rt.settings)
        async with aiohttp.ClientSession() as http:
            tabs = [await _chat_tab(http, base) for _ in range(4)]

            async def visitor(i: int, ws) -> list[dict]:
                errors = []
                for j in range(6):
                    cmid = f"p{i}-{j}"
                    await ws.send_str(json.dumps({"type": "message", "client_msg_id": cmid,
                                                  "text": bad_texts[j % len(bad_texts)]}))
                    errors.append(await _frames_until(
                        ws, lambda f: f["type"] in ("error", "ack") and f.get("client_msg_id") == cmid))
                await ws.send_str(json.dumps({"type": "ping"}))
                await _frames_until(ws, lambda f: f["type"] == "pong")
                return errors

            webhooks = [post_twilio_form(f"{base}/webhooks/twilio/inbound",
                                         twilio_inbound_params(f"+1415555{i:04d}", "+15005550006", f"hello {i}"),
                                         token, base) for i in range(n_sms)]
            results = await asyncio.gather(*webhooks, *(visitor(i, ws) for i, ws in enumerate(tabs)))
            for ws in tabs:
                await ws.close()
    statuses = [status for status, _ in results[:n_sms]]
    assert statuses == [200] * n_sms
    for errors in results[n_sms:]:
        assert [e["type"] for e in errors] == ["error"] * 6
        assert {e["code"] for e in errors} == {"invalid_text"}
        assert any("NUL" in e["message"] for e in errors) and any("surrogate" in e["message"] for e in errors)
    assert await pool.fetchval("SELECT count(*) FROM messages WHERE channel = 'sms' AND direction = 'in'") == n_sms
    assert await pool.fetchval("SELECT count(*) FROM messages WHERE channel = 'webchat'") == 0


def _sms(mid: str, sender: str, text: str = "hi") -> Inbound:
    return Inbound(channel=Channel.SMS, provider="twilio", provider_message_id=mid, sender=sender, text=text)


async def test_unstorable_items_fail_alone_inside_a_batch(settings, pool, clean, redis_client):
    """Bad items submitted together with good ones (so they share batches) fail alone, with
    InputError; the good ones are stored, free text cleaned."""
    bad = [_sms("SM\u0000nul", "+14155550001"), _sms("S" * 2700, "+14155550002"),
           _sms("SMsurrogate\ud800", "+14155550003")]
    good = [_sms(f"SMgood{i}", f"+1415666{i:04d}", f"text {i}\u0000!\ud83d") for i in range(60)]
    async with running_gateway(settings, roles=("http",)) as (rt, _):
        items = good[:20] + bad + good[20:]
        results = await asyncio.gather(*(intake.accept(rt, m) for m in items), return_exceptions=True)
    failed = [r for r in results if isinstance(r, Exception)]
    assert len(failed) == len(bad) and all(isinstance(r, InputError) for r in failed)
    assert await pool.fetchval("SELECT count(*) FROM messages") == len(good)
    assert await pool.fetchval("SELECT count(*) FROM messages WHERE body = 'text 7!\ufffd'") == 1


async def test_twilio_bad_items_get_400_and_good_text_is_cleaned(settings, pool, clean, redis_client):
    async with running_gateway(settings, roles=("http",)) as (rt, base):
        token, url = twilio_webhook_token(rt.settings), f"{base}/webhooks/twilio/inbound"

        def params(**changes):
            p = dict(twilio_inbound_params("+14155550100", "+15005550006", "hi"))
            p.update(changes)
            return [(k, v) for k, v in p.items() if v is not None]

        cases = {
            "nan": params(Latitude="nan", Longitude="1", MessageType="location"),
            "inf": params(Latitude="1", Longitude="inf"),
            "long_sid": params(MessageSid="SM" + "a" * 2700, SmsMessageSid=None, SmsSid=None),
            "empty_whatsapp": params(From="whatsapp:"),
            "blank_whatsapp": params(From="whatsapp:  "),
        }
        for name, p in cases.items():
            status, body = await post_twilio_form(url, p, token, base)
            assert status == 400, (name, status, body)
        status, _ = await post_twilio_form(url, params(Body="a\u0000b"), token, base)
        assert status == 200
    assert [r["body"] for r in await pool.fetch("SELECT body FROM messages")] == ["ab"]
    assert await pool.fetchval("SELECT count(*) FROM identities WHERE address = ''") == 0


async def test_whatsapp_post_keeps_good_messages_when_one_is_unstorable(settings, pool, clean, redis_client):
    def message(mid: str, text: str) -> dict:
        return {"from": "14155550123", "id": mid, "timestamp": "1700000000", "type": "text", "text": {"body": text}}

    payload = {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp", "metadata": {"display_phone_number": "1555", "phone_number_id": "99"},
        "contacts": [{"profile": {"name": "A\u0000na"}, "wa_id": "14155550123"}],
        "messages": [message("wamid.bad\u0000", "dropped"), message("wamid.good", "he\u0000llo \ud800")]}}]}]}
    raw = json.dumps(payload).encode()
    async with running_gateway(settings, roles=("http",)) as (rt, base):
        headers = {"Content-Type": "application/json",
                   "X-Hub-Signature-256": signature_header(raw, whatsapp_app_secret(rt.settings))}
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{base}/webhooks/whatsapp", data=raw, headers=headers) as resp:
                assert resp.status == 200
                assert "message id" in (await resp.json())["refused"][0]
            listed = json.dumps({**payload, "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
                "contacts": [{"wa_id": ["14155550123"]}], "messages": [message("wamid.x", "x")]}}]}]}).encode()
            headers["X-Hub-Signature-256"] = signature_header(listed, whatsapp_app_secret(rt.settings))
            async with http.post(f"{base}/webhooks/whatsapp", data=listed, headers=headers) as resp:
                assert resp.status < 500   # wa_id as a list: never a 500
            odd = json.dumps({**payload, "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
                "metadata": {"phone_number_id": False}, "contacts": [{"profile": {"name": ["A"]}, "wa_id": "1"}],
                "messages": [message("wamid.odd", "odd types")]}}]}]}).encode()
            headers["X-Hub-Signature-256"] = signature_header(odd, whatsapp_app_secret(rt.settings))
            async with http.post(f"{base}/webhooks/whatsapp", data=odd, headers=headers) as resp:
                assert resp.status == 200 and "refused" not in await resp.json()
    rows = await pool.fetch("SELECT provider_message_id, body FROM messages ORDER BY id")
    assert [r["provider_message_id"] for r in rows if r["provider_message_id"] != "wamid.x"] == \
        ["wamid.good", "wamid.odd"]
    assert rows[0]["body"] == "hello \ufffd"


async def test_email_webhooks_clean_nul_and_refuse_unstorable_ids(settings, pool, clean, redis_client):
    s = settings.with_(email_webhook_key=KEY)
    async with running_gateway(s, roles=("http",)) as (rt, base):
        async with aiohttp.ClientSession() as http:
            sg = aiohttp.FormData({"from": "Bo <bo@example.org>", "to": "support@example.com", "subject": "H\u0000i",
                                   "text": "Hello\u0000 from SendGrid",
                                   "headers": "Message-ID: <sg-nul@example.org>\n"})
            async with http.post(f"{base}/webhooks/email/inbound?key={KEY}", data=sg) as resp:
                assert resp.status == 200, await resp.text()
            mg = simulated_mailgun_form(s, sender="cy@example.org", recipient="support@example.com",
                                        subject="Yo", text="Hi\u0000 from Mailgun")
            async with http.post(f"{base}/webhooks/email/inbound", data=mg) as resp:
                assert resp.status == 200, await resp.text()
            bad = simulated_mailgun_form(s, sender="cy@example.org", recipient="support@example.com",
                                         subject="Yo", text="long id")
            bad["Message-Id"] = "<x" + "y" * 600 + "@example.org>"
            bad["message-headers"] = json.dumps([["Message-Id", bad["Message-Id"]]])
            async with http.post(f"{base}/webhooks/email/inbound", data=bad) as resp:
                assert resp.status == 406, await resp.text()   # Mailgun: refused, do not retry
    bodies = sorted(r["body"] for r in await pool.fetch("SELECT body FROM messages"))
    assert bodies == ["Hello from SendGrid", "Hi from Mailgun"]


def _smtp_send(port: int, raw: bytes, mail_from: str = "ana@customer.example") -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        try:
            client.sendmail(mail_from, ["support@example.com"], raw)
        except smtplib.SMTPDataError as exc:
            return exc.smtp_code, exc.smtp_error
        return 250, b""


@pytest.mark.parametrize("where", ["body", "from", "charset"])
async def test_smtp_mail_with_nul_is_cleaned_or_refused_for_good(settings, pool, clean, redis_client, where):
    """NUL in the body: accepted (250) and stored without it. NUL in From: refused with 550 and a
    reason, never 451 (which the sending MTA retries for days)."""
    from gateway.channels.email.intake import start_smtp_listener

    s = settings.with_(smtp_listen_port=free_port())
    sender = b"Ana <ana\x00@customer.example>" if where == "from" else b"Ana <ana@customer.example>"
    charset = b"utf\x00-8" if where == "charset" else b"utf-8"   # decoding by that name raised ValueError
    raw = (b"From: " + sender + b"\r\nTo: support@example.com\r\nSubject: Hi\r\n"
           b"Content-Type: text/plain; charset=\"" + charset + b"\"\r\n"
           b"Message-ID: <nul-" + where.encode() + b"@customer.example>\r\n\r\nWhere\x00 is my order?\r\n")
    async with running_gateway(s, roles=("http",)) as (rt, _):
        stop = await start_smtp_listener(rt)
        try:
            code, reply = await asyncio.to_thread(_smtp_send, s.smtp_listen_port, raw)
        finally:
            await stop()
    if where in ("body", "charset"):
        assert code == 250, (code, reply)
        assert [r["body"] for r in await pool.fetch("SELECT body FROM messages")] == ["Where is my order?"]
    else:
        assert code == 550 and b"control characters" in reply, (code, reply)
        assert await pool.fetchval("SELECT count(*) FROM messages") == 0


async def test_status_callback_with_an_unusable_recipient_still_counts(settings, pool, clean, redis_client):
    """`To=whatsapp:` (nothing after it) on a status callback: the status is applied, the recipient
    dropped; a NUL in the MessageSid is a 400."""
    from gateway.devtools.simulate_providers import twilio_status_params

    async with running_gateway(settings, roles=("http",)) as (rt, base):
        token, url = twilio_webhook_token(rt.settings), f"{base}/webhooks/twilio/status"
        status, body = await post_twilio_form(url, twilio_status_params("SMnone", "delivered", to="whatsapp:",
                                                                        from_="whatsapp:+15005550006"), token, base)
        assert status == 200, body
        status, body = await post_twilio_form(url, twilio_status_params("SM\u0000x", "delivered", to="+14155550100",
                                                                        from_="+15005550006"), token, base)
        assert status == 400, body


async def test_an_email_address_longer_than_254_characters_is_refused(settings, pool, clean, redis_client):
    async with running_gateway(settings, roles=("http",)) as (rt, base):
        async with aiohttp.ClientSession() as http:
            body = {"client_message_id": "m", "text": "hi", "contact": {"email": "a" * 250 + "@example.org"}}
            async with http.post(f"{base}/api/v1/inbound", json=body,
                                 headers={"Authorization": f"Bearer {rt.settings.admin_token}"}) as resp:
                assert resp.status == 400, await resp.text()
    assert await pool.fetchval("SELECT count(*) FROM identities") == 0
