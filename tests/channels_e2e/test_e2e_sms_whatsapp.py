"""SMS and WhatsApp end to end: signed webhooks into the real server, replies to fake providers."""
from __future__ import annotations

import asyncio
import json

import aiohttp

from gateway.devtools.fakes.graph import FakeGraph
from gateway.devtools.fakes.twilio import FakeTwilio
from gateway.devtools.simulate_providers import (meta_inbound_payload, meta_status_payload, post_meta_webhook,
                                                 post_twilio_inbound, twilio_inbound_params)
from gateway.devtools.testing import running_gateway, wait_for
from gateway.domain import consent, thread
from gateway.domain.types import Channel, Purpose

OUR_SMS = "+15550001111"
OUR_WA = "+15550002222"
CUSTOMER = "+14155550100"
APP_SECRET = "test_app_secret_0123456789abcdef"
PHONE_ID = "106540352242922"


def twilio_settings(settings, fake: FakeTwilio, **kw):
    return settings.with_(twilio_account_sid=fake.account_sid, twilio_auth_token=fake.auth_token,
                          twilio_from_number=OUR_SMS, twilio_whatsapp_from=OUR_WA,
                          twilio_api_base=fake.base_url, default_handler="echo", **kw)


async def sms_in(url, fake, text, sender=CUSTOMER, whatsapp=False, params=None):
    params = params or twilio_inbound_params(sender, OUR_WA if whatsapp else OUR_SMS, text, whatsapp=whatsapp)
    status, body = await post_twilio_inbound(f"{url}/webhooks/twilio/inbound", params, fake.auth_token)
    return status, body, params


async def sent_bodies(fake, n, timeout=15):
    async def enough():
        return len([r for r in fake.requests if r.method == "POST"]) >= n
    await wait_for(enough, timeout=timeout)
    return [r.value("Body") for r in fake.requests if r.method == "POST"]


async def test_sms_round_trip_with_monotonic_status_callbacks(settings, pool, clean, redis_client):
    async with FakeTwilio() as fake:
        async with running_gateway(twilio_settings(settings, fake)) as (rt, url):
            status, body, _ = await sms_in(url, fake, "Hello, café & more?")
            assert status == 200 and body.startswith("<?xml") and "<Response/>" in body
            assert await sent_bodies(fake, 1) == ["You said: Hello, café & more?"]
            req = fake.requests[0]
            assert req.value("To") == CUSTOMER and req.value("From") == OUR_SMS
            assert req.value("StatusCallback") == f"{url}/webhooks/twilio/status"
            sid = next(iter(fake.messages))

            async def recorded():
                return await pool.fetchval("SELECT status FROM messages WHERE provider_message_id = $1", sid)
            assert await wait_for(recorded) == "queued"
            # callbacks out of order: delivered arrives before sent; a stray failure after delivery
            for st, code in (("delivered", None), ("sent", None), ("undelivered", 30007)):
                s, _ = await fake.send_status_callback(f"{url}/webhooks/twilio/status", sid, st, code)
                assert s == 200
    row = await pool.fetchrow("SELECT status, segments, error_code FROM messages WHERE provider_message_id = $1", sid)
    assert row["status"] == "delivered" and row["segments"] == 1 and row["error_code"] is None


async def test_bad_signature_is_403_and_stores_nothing(settings, pool, clean, redis_client):
    async with FakeTwilio() as fake:
        async with running_gateway(twilio_settings(settings, fake)) as (rt, url):
            params = twilio_inbound_params(CUSTOMER, OUR_SMS, "hi")
            status, _ = await post_twilio_inbound(f"{url}/webhooks/twilio/inbound", params, "wrong-token")
            assert status == 403
            async with aiohttp.ClientSession() as http:
                async with http.post(f"{url}/webhooks/twilio/inbound", data=params) as resp:
                    assert resp.status == 403          # no signature at all
            tampered = [(k, "hacked" if k == "Body" else v) for k, v in params]
            async with aiohttp.ClientSession() as http:
                from gateway.channels.twilio.adapter import compute_signature
                sig = compute_signature(f"{url}/webhooks/twilio/inbound", params, fake.auth_token)
                async with http.post(f"{url}/webhooks/twilio/inbound", data=tampered,
                                     headers={"X-Twilio-Signature": sig}) as resp:
                    assert resp.status == 403
    assert await pool.fetchval("SELECT count(*) FROM messages") == 0
    assert await pool.fetchval("SELECT count(*) FROM contacts") == 0


async def test_replayed_webhook_is_stored_once_and_answered_once(settings, pool, clean, redis_client):
    async with FakeTwilio() as fake:
        async with running_gateway(twilio_settings(settings, fake)) as (rt, url):
            params = twilio_inbound_params(CUSTOMER, OUR_SMS, "only once")
            results = await asyncio.gather(*(sms_in(url, fake, "", params=params) for _ in range(5)))
            assert all(r[0] == 200 for r in results)
            await sent_bodies(fake, 1)
            await asyncio.sleep(0.5)
            assert len(fake.requests) == 1
    assert await pool.fetchval("SELECT count(*) FROM messages WHERE direction = 'in'") == 1


async def test_sms_and_whatsapp_from_one_number_are_one_thread_reply_on_last_channel(settings, pool, clean,
                                                                                     redis_client):
    async with FakeTwilio() as fake:
        async with running_gateway(twilio_settings(settings, fake)) as (rt, url):
            await sms_in(url, fake, "by sms")
            await sent_bodies(fake, 1)
            await sms_in(url, fake, "by whatsapp", sender=CUSTOMER, whatsapp=True)
            await sent_bodies(fake, 2)
    second = fake.requests[1]
    assert second.value("To") == f"whatsapp:{CUSTOMER}" and second.value("From") == f"whatsapp:{OUR_WA}"
    assert await pool.fetchval("SELECT count(*) FROM contacts") == 1
    rows = await pool.fetch("SELECT channel, direction FROM messages ORDER BY seq")
    assert [(r["channel"], r["direction"]) for r in rows] == [
        ("sms", "in"), ("sms", "out"), ("whatsapp", "in"), ("whatsapp", "out")]


async def test_stop_beats_a_queued_nudge_and_start_help_work(settings, pool, clean, redis_client):
    async with FakeTwilio() as fake:
        async with running_gateway(twilio_settings(settings, fake), roles=("http",)) as (rt, url):
            await sms_in(url, fake, "hi")
            conv = await pool.fetchval("SELECT id FROM conversations")
            await rt.processor.drain(conv)
            await rt.outbox.send_due()
            async with pool.acquire() as c, c.transaction():   # a nudge (opted in) waits in the outbox...
                await consent.set_consent(c, kind="phone", address=CUSTOMER, channel="sms", purpose="marketing",
                                          granted=True, source="web form", proof={"ip": "192.0.2.1"})
                nudge = await thread.queue_outbound(c, conv, text="Your cart misses you", author_type="journey",
                                                    purpose=Purpose.MARKETING, channel=Channel.SMS)
            await sms_in(url, fake, " Stop ")                  # ...when the customer says STOP
            await rt.processor.drain(conv)
            await rt.outbox.send_due()
            await sms_in(url, fake, "anything else?")           # the bot must not answer on SMS now
            await rt.processor.drain(conv)
            await rt.outbox.send_due()
            bodies = [r.value("Body") for r in fake.requests]
            assert bodies == ["You said: hi", "You won't get more SMS from us on this number. Reply START to resubscribe."]
            nudge_row = await pool.fetchrow("SELECT status, error_code FROM messages WHERE id = $1", nudge)
            assert nudge_row["status"] == "failed" and nudge_row["error_code"] == "opted_out"
            await sms_in(url, fake, "START")
            await sms_in(url, fake, "help")
            await rt.processor.drain(conv)
            await rt.outbox.send_due()
            bodies = [r.value("Body") for r in fake.requests]
            assert bodies[2:] == ["You'll get SMS from us on this number again. Reply STOP to unsubscribe.",
                                  rt.settings.help_text]
    events = [r["e"] for r in await pool.fetch(
        "SELECT content->>'event' AS e FROM messages WHERE kind = 'event' ORDER BY seq")]
    assert events == ["opted_out", "reply_not_sent", "opted_in"]
    assert await pool.fetchval("SELECT count(*) FROM messages WHERE direction = 'in' AND body = ' Stop '") == 1


async def test_provider_outage_retries_then_dead_letters_without_duplicate_sends(settings, pool, clean,
                                                                                redis_client):
    async with FakeTwilio() as fake:
        fake.fail_next(100, http_status=503, code=None, message="Service Unavailable")
        async with running_gateway(twilio_settings(settings, fake, outbox_max_attempts=4)) as (rt, url):
            await sms_in(url, fake, "are you there?")

            async def dead():
                return await pool.fetchval("SELECT state = 'dead' FROM outbox")
            await wait_for(dead, timeout=20)
    assert len(fake.requests) == 4 and not fake.messages
    row = await pool.fetchrow("SELECT status, error_code FROM messages WHERE direction = 'out'")
    assert row["status"] == "failed"


async def test_provider_throttling_is_retried_and_sent_once(settings, pool, clean, redis_client):
    async with FakeTwilio() as fake:
        fake.fail_next(2, http_status=429, code=20429, message="Too Many Requests", retry_after=0.1)
        async with running_gateway(twilio_settings(settings, fake)) as (rt, url):
            await sms_in(url, fake, "burst")
            await sent_bodies(fake, 3)
            await asyncio.sleep(0.3)
    assert len(fake.messages) == 1 and len(fake.requests) == 3
    assert await pool.fetchval("SELECT status FROM messages WHERE direction = 'out'") == "queued"


async def test_21610_from_provider_marks_the_address_opted_out(settings, pool, clean, redis_client):
    async with FakeTwilio() as fake:
        fake.fail_for(CUSTOMER, code=21610)
        async with running_gateway(twilio_settings(settings, fake)) as (rt, url):
            await sms_in(url, fake, "hello")

            async def opted_out():
                return await pool.fetchval(
                    "SELECT NOT granted FROM consents WHERE address = $1 AND channel = 'sms'", CUSTOMER)
            await wait_for(opted_out)
    assert await pool.fetchval("SELECT error_code FROM messages WHERE direction = 'out'") == "21610"


def meta_settings(settings, graph: FakeGraph, **kw):
    return settings.with_(whatsapp_access_token=graph.access_token, whatsapp_app_secret=APP_SECRET,
                          whatsapp_verify_token="verify-me", whatsapp_phone_number_id=PHONE_ID,
                          whatsapp_api_base=graph.api_base, default_handler="echo", **kw)


async def test_meta_cloud_round_trip_verify_statuses_and_duplicates(settings, pool, clean, redis_client):
    async with FakeGraph(phone_number_id=PHONE_ID) as graph:
        async with running_gateway(meta_settings(settings, graph)) as (rt, url):
            async with aiohttp.ClientSession() as http:
                q = {"hub.mode": "subscribe", "hub.verify_token": "verify-me", "hub.challenge": "1158201444"}
                async with http.get(f"{url}/webhooks/whatsapp", params=q) as resp:
                    assert resp.status == 200 and await resp.text() == "1158201444"
                async with http.get(f"{url}/webhooks/whatsapp", params={**q, "hub.verify_token": "no"}) as resp:
                    assert resp.status == 403
            payload = meta_inbound_payload("14155550100", "Hi there", PHONE_ID)
            for _ in range(3):  # Meta retries
                status, _ = await post_meta_webhook(f"{url}/webhooks/whatsapp", payload, APP_SECRET)
                assert status == 200
            status, _ = await post_meta_webhook(f"{url}/webhooks/whatsapp", payload, "wrong-secret")
            assert status == 403

            async def replied():
                return graph.requests
            await wait_for(replied)
            sent = graph.requests[0].json
            assert sent["type"] == "text" and sent["text"]["body"] == "You said: Hi there"
            assert sent["to"] == "14155550100"
            wamid = await wait_for(lambda: pool.fetchval(
                "SELECT provider_message_id FROM messages WHERE direction = 'out' AND provider_message_id IS NOT NULL"))
            for st in ("read", "delivered", "sent"):
                status, _ = await post_meta_webhook(
                    f"{url}/webhooks/whatsapp", meta_status_payload(wamid, st, "14155550100", PHONE_ID), APP_SECRET)
                assert status == 200
    assert await pool.fetchval("SELECT count(*) FROM messages WHERE direction = 'in'") == 1
    assert await pool.fetchval("SELECT status FROM messages WHERE provider_message_id = $1", wamid) == "read"
    assert await pool.fetchval("SELECT name FROM contacts") is not None


async def test_whatsapp_outside_24h_window_sends_the_template(settings, pool, clean, redis_client):
    async with FakeGraph(phone_number_id=PHONE_ID) as graph:
        s = meta_settings(settings, graph, whatsapp_reengage_template="reengage_v1")
        async with running_gateway(s, roles=("http",)) as (rt, url):
            await post_meta_webhook(f"{url}/webhooks/whatsapp",
                                    meta_inbound_payload("14155550100", "hello", PHONE_ID), APP_SECRET)
            conv = await pool.fetchval("SELECT id FROM conversations")
            await rt.processor.drain(conv)
            await rt.outbox.send_due()
            await pool.execute("UPDATE messages SET created_at = now() - interval '25 hours' WHERE direction = 'in'")
            async with pool.acquire() as c, c.transaction():
                await thread.queue_outbound(c, conv, text="Your order shipped", author_type="agent",
                                            whatsapp_template_available=True)
            await rt.outbox.send_due()
    first, second = graph.requests[0].json, graph.requests[1].json
    assert first["type"] == "text"
    assert second["type"] == "template" and second["template"]["name"] == "reengage_v1"
    params = second["template"]["components"][0]["parameters"]
    assert params == [{"type": "text", "text": "Your order shipped"}]


async def test_malformed_meta_payload_is_400_and_unknown_fields_are_ignored(settings, pool, clean, redis_client):
    async with FakeGraph(phone_number_id=PHONE_ID) as graph:
        async with running_gateway(meta_settings(settings, graph)) as (rt, url):
            for bad in (b"{not json", json.dumps({"object": "page"}).encode(), json.dumps([1]).encode()):
                status, _ = await post_meta_webhook(f"{url}/webhooks/whatsapp", bad, APP_SECRET)
                assert status == 400
            other = {"object": "whatsapp_business_account",
                     "entry": [{"id": "1", "changes": [{"field": "account_update", "value": {"x": 1}}]}]}
            status, _ = await post_meta_webhook(f"{url}/webhooks/whatsapp", other, APP_SECRET)
            assert status == 200
    assert await pool.fetchval("SELECT count(*) FROM messages") == 0


async def test_long_sms_is_split_into_parts_with_segment_counts(settings, pool, clean, redis_client):
    async with FakeTwilio() as fake:
        async with running_gateway(twilio_settings(settings, fake), roles=("http",)) as (rt, url):
            await sms_in(url, fake, "hi")
            conv = await pool.fetchval("SELECT id FROM conversations")
            await rt.processor.drain(conv)
            long_text = ("Paragraph one about your order. " * 40).strip() + "\n\n" + "€uro détails 😀 " * 60
            async with pool.acquire() as c, c.transaction():
                await thread.queue_outbound(c, conv, text=long_text, author_type="agent")
            await rt.outbox.send_due()
    bodies = [r.value("Body") for r in fake.requests][1:]
    assert len(bodies) >= 2 and all(len(b) <= 1600 for b in bodies)
    assert " ".join(b.strip() for b in bodies).split() == long_text.split()
    segs = [r["segments"] for r in await pool.fetch(
        "SELECT segments FROM messages WHERE direction = 'out' ORDER BY seq")][1:]
    assert all(s and s > 1 for s in segs)


async def test_stopall_stops_every_channel_and_start_restores_what_it_removed(settings, pool, clean, redis_client):
    """STOP ends one channel and says so; STOPALL ends every channel of the contact (WhatsApp, email);
    START brings back exactly what the STOP keyword removed (the marketing opt-ins are kept)."""
    async def queue(conv, channel, to, purpose=Purpose.MARKETING):
        async with pool.acquire() as c, c.transaction():
            return await thread.queue_outbound(c, conv, text=f"offer by {channel.value}", author_type="journey",
                                               purpose=purpose, channel=channel, to_address=to, subject="Offer")

    async def outcome(mid):
        row = await pool.fetchrow("SELECT o.state, m.error_code FROM outbox o JOIN messages m ON m.id = o.message_id "
                                  "WHERE o.message_id = $1", mid)
        return row["error_code"] if row["state"] == "skipped" else row["state"]

    async with FakeTwilio() as fake:
        async with running_gateway(twilio_settings(settings, fake), roles=("http",)) as (rt, url):
            await sms_in(url, fake, "hi")
            conv = await pool.fetchval("SELECT id FROM conversations")
            contact = await pool.fetchval("SELECT contact_id FROM conversations WHERE id = $1", conv)
            await pool.execute("INSERT INTO identities (contact_id, kind, address) VALUES ($1, 'email', 'kim@example.com')",
                               contact)
            async with pool.acquire() as c:
                for channel in ("sms", "whatsapp"):
                    await consent.set_consent(c, kind="phone", address=CUSTOMER, channel=channel, purpose="marketing",
                                              granted=True, source="web form", proof={"ip": "192.0.2.1"})
            await rt.processor.drain(conv)
            await sms_in(url, fake, "STOP")
            await rt.processor.drain(conv)
            wa_after_stop = await queue(conv, Channel.WHATSAPP, CUSTOMER)
            await rt.outbox.send_due()
            assert await outcome(wa_after_stop) == "done"           # STOP on SMS stops SMS only...
            bodies = [r.value("Body") for r in fake.requests]
            assert "You won't get more SMS from us on this number. Reply START to resubscribe." in bodies

            await sms_in(url, fake, "stopall")                       # ...STOPALL stops every channel
            await rt.processor.drain(conv)
            wa, mail = await queue(conv, Channel.WHATSAPP, CUSTOMER), await queue(conv, Channel.EMAIL, "kim@example.com")
            receipt = await queue(conv, Channel.EMAIL, "kim@example.com", Purpose.TRANSACTIONAL)
            await rt.outbox.send_due()
            assert [await outcome(m) for m in (wa, mail, receipt)] == ["opted_out"] * 3
            assert [r.value("Body") for r in fake.requests][-1] == (
                "You won't get any more messages from us on any channel: SMS, WhatsApp, email or chat. "
                "Reply START to resubscribe.")

            await sms_in(url, fake, "START")
            await rt.processor.drain(conv)
            sms, wa, mail = (await queue(conv, Channel.SMS, CUSTOMER), await queue(conv, Channel.WHATSAPP, CUSTOMER),
                             await queue(conv, Channel.EMAIL, "kim@example.com"))
            await rt.outbox.send_due()
            assert [await outcome(m) for m in (sms, wa, mail)] == ["done"] * 3
            assert [r.value("Body") for r in fake.requests if r.value("Body").startswith("You'll")] == [
                "You'll get messages from us again on every channel. Reply STOP to unsubscribe."]
    history = await pool.fetch("SELECT channel, granted, source FROM consent_history WHERE purpose = 'all' ORDER BY id")
    assert [(h["channel"], h["granted"], h["source"]) for h in history] == [
        ("sms", False, "keyword:STOP"), ("*", False, "keyword:stopall"), ("*", False, "keyword:stopall"),
        ("sms", True, "keyword:START"), ("*", True, "keyword:START"), ("*", True, "keyword:START")]


async def test_fallback_follows_the_configured_consent_regimes(settings, pool, clean, redis_client):
    """WhatsApp cannot deliver a marketing message (63016): it moves to SMS when the deployment's
    regime makes SMS marketing opt-out, though no SMS opt-in is recorded."""
    from gateway.domain.consent import parse_regimes

    regimes = parse_regimes("sms.marketing=opt_out")
    async with FakeTwilio() as fake:
        async with running_gateway(twilio_settings(settings, fake, consent_regimes=regimes),
                                   roles=("http",)) as (rt, url):
            await sms_in(url, fake, "hi", whatsapp=True)
            conv = await pool.fetchval("SELECT id FROM conversations")
            await rt.processor.drain(conv)
            await rt.outbox.send_due()
            async with pool.acquire() as c, c.transaction():
                await consent.set_consent(c, kind="phone", address=CUSTOMER, channel="whatsapp", purpose="marketing",
                                          granted=True, source="web form", proof={"ip": "192.0.2.1"})
                await thread.queue_outbound(c, conv, text="Your cart misses you", author_type="journey",
                                            purpose=Purpose.MARKETING, channel=Channel.WHATSAPP)
            fake.fail_next(1, http_status=400, code=63016, message="Outside the allowed window")

            async def sms_nudge_sent():
                await rt.outbox.send_due()
                return [m for m in fake.accepted(CUSTOMER) if m["body"] == "Your cart misses you"]
            await wait_for(sms_nudge_sent, timeout=20, message="the nudge never moved to SMS")
