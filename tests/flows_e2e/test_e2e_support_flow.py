"""The support flow served end to end: signed SMS in, bot replies out through the fake Twilio."""
from __future__ import annotations

import asyncio
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiohttp
from aiohttp import web

from gateway.devtools.fakes.twilio import FakeTwilio
from gateway.devtools.simulate_providers import post_twilio_inbound, twilio_inbound_params
from gateway.devtools.testing import LocalServer, running_gateway, wait_for
from gateway.domain import thread
from gateway.domain.timers import ManualClock

OUR = "+15550001111"
CUSTOMER = "+14155550100"
FLOWS = Path(__file__).resolve().parents[2] / "flows"
MONDAY_10_BERLIN = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)


class BusinessApi(LocalServer):
    """The business's order API the support flow calls."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def routes(self, app):
        app.router.add_get("/orders/{id}", self.order)

    async def order(self, request):
        self.calls.append(request.path)
        if request.match_info["id"] == "AB12345":
            return web.json_response({"status": "shipped", "eta": "2026-11-26"})
        return web.json_response({"error": "not found"}, status=404)


def flow_settings(settings, fake, api, **kw):
    return settings.with_(default_handler="flow", twilio_account_sid=fake.account_sid,
                          twilio_auth_token=fake.auth_token, twilio_from_number=OUR,
                          twilio_api_base=fake.base_url, business_api_base=f"http://127.0.0.1:{api.port}",
                          flows_dir=FLOWS, **kw)


async def say(url, fake, text):
    status, _ = await post_twilio_inbound(f"{url}/webhooks/twilio/inbound",
                                          twilio_inbound_params(CUSTOMER, OUR, text), fake.auth_token)
    assert status == 200


async def replies(fake, n):
    async def enough():
        return len(fake.requests) >= n
    await wait_for(enough, timeout=15, message=f"expected {n} replies, got {[r.value('Body') for r in fake.requests]}")
    return [r.value("Body") for r in fake.requests]


async def test_sms_customer_gets_order_status_from_the_business_api(settings, pool, clean, redis_client):
    async with FakeTwilio() as fake, BusinessApi() as api:
        async with running_gateway(flow_settings(settings, fake, api)) as (rt, url):
            await say(url, fake, "hi")
            menu = (await replies(fake, 1))[0]
            assert "How can I help" in menu and "1. Order status" in menu  # numbered menu on SMS
            await say(url, fake, "1")
            assert "order number" in (await replies(fake, 2))[1]
            await say(url, fake, "it's ab-12345")
            bodies = await replies(fake, 4)
    assert "AB12345 is shipped" in bodies[2] and "Anything else" in bodies[3]
    assert api.calls == ["/orders/AB12345"]
    conv = await pool.fetchrow("SELECT flow_name, flow_state, flow_version, labels FROM conversations")
    assert conv["flow_name"] == "support" and conv["flow_state"] == "anything_else"
    assert "order-status" in conv["labels"]
    assert await pool.fetchval("SELECT count(*) FROM flow_versions WHERE name = 'support' AND version = $1",
                               conv["flow_version"]) == 1


async def test_asking_for_a_person_escalates_and_the_bot_stays_silent_until_handed_back(settings, pool, clean,
                                                                                      redis_client):
    async with FakeTwilio() as fake, BusinessApi() as api:
        clock = ManualClock(MONDAY_10_BERLIN)
        async with running_gateway(flow_settings(settings, fake, api), clock=clock) as (rt, url):
            await say(url, fake, "i want to talk to a humann")
            await replies(fake, 1)

            async def escalated():
                return await pool.fetchval("SELECT mode = 'agent' FROM conversations")
            await wait_for(escalated)
            await say(url, fake, "hello? anyone?")

            async def waiting():
                return await pool.fetchval("SELECT count(*) FROM messages WHERE direction = 'in' "
                                           "AND processed_at IS NOT NULL") == 2
            await wait_for(waiting)
            assert len(fake.requests) == 1  # silent while an agent owns the conversation
            conv = await pool.fetchval("SELECT id FROM conversations")
            effects = thread.Effects()
            async with pool.acquire() as c, c.transaction():
                await rt.flow_handler.hand_back(c, conv, "menu", effects)
            await rt.publish_effects(effects)
            bodies = await replies(fake, 2)
    assert "How can I help" in bodies[1]
    summary = await pool.fetchval("SELECT content->>'summary' FROM messages WHERE content->>'event' = 'escalated'")
    assert summary and "customer" in summary.lower()
    assert await pool.fetchval("SELECT mode FROM conversations") == "bot"


async def test_no_reply_reminder_fires_from_a_durable_timer(settings, pool, clean, redis_client):
    async with FakeTwilio() as fake, BusinessApi() as api:
        clock = ManualClock(MONDAY_10_BERLIN)
        async with running_gateway(flow_settings(settings, fake, api), clock=clock, roles=("http",)) as (rt, url):
            await say(url, fake, "hi")
            conv = await pool.fetchval("SELECT id FROM conversations")
            await rt.processor.drain(conv)
            await rt.outbox.send_due()
            assert await pool.fetchval("SELECT count(*) FROM timers WHERE state = 'pending'") >= 1
            clock.advance(timedelta(minutes=9))
            assert await rt.timers.fire_due() == 0
            clock.advance(timedelta(minutes=2))
            assert await rt.timers.fire_due() == 1
            await rt.outbox.send_due()
            clock.advance(timedelta(minutes=10))
            await rt.timers.fire_due()
            await rt.outbox.send_due()
    bodies = [r.value("Body") for r in fake.requests]
    assert "Are you still there" in bodies[1] and "closing this chat" in bodies[2]
    assert await pool.fetchval("SELECT flow_state FROM conversations") is None  # the flow ended


async def test_conversation_keeps_its_flow_version_after_a_deploy(settings, pool, clean, redis_client, tmp_path):
    flows = tmp_path / "flows"
    shutil.copytree(FLOWS, flows)
    async with FakeTwilio() as fake, BusinessApi() as api:
        s = flow_settings(settings, fake, api).with_(flows_dir=flows)
        async with running_gateway(s) as (rt, url):
            await say(url, fake, "1")          # straight into "what's your order number?"
            await replies(fake, 1)
        old_version = await pool.fetchval("SELECT flow_version FROM conversations")
        text = (flows / "support.yaml").read_text()
        (flows / "support.yaml").write_text(text.replace("Sure! What's your order number?", "Order number, please?")
                                            .replace("Hi! How can I help?", "Welcome back! How can I help?"))
        async with running_gateway(s) as (rt, url):   # the deploy: a new version is current
            new_version = rt.flow_handler.registry.get("support").version
            assert new_version != old_version
            await say(url, fake, "AB12345")     # the old conversation continues on the old version
            bodies = await replies(fake, 3)
    assert "AB12345 is shipped" in bodies[1]
    assert await pool.fetchval("SELECT flow_version FROM conversations") == old_version
    assert await pool.fetchval("SELECT count(*) FROM flow_versions WHERE name = 'support'") == 2


async def test_a_journey_hand_off_to_a_flow_state_is_where_the_bot_picks_up(settings, pool, clean, redis_client):
    """A journey step sets flow_name/flow_state without a version: the next message runs there."""
    async with FakeTwilio() as fake, BusinessApi() as api:
        async with running_gateway(flow_settings(settings, fake, api), roles=("http",)) as (rt, url):
            await say(url, fake, "hi")
            conv = await pool.fetchval("SELECT id FROM conversations")
            await rt.processor.drain(conv)
            await pool.execute("UPDATE conversations SET flow_name = 'support', flow_state = 'faq', "
                               "flow_version = NULL, flow_data = '{}'::jsonb WHERE id = $1", conv)
            await say(url, fake, "how do I return an item?")
            await rt.processor.drain(conv)
            await rt.outbox.send_due()
    bodies = [r.value("Body") for r in fake.requests]
    assert "return any item within 30 days" in bodies[1]
    assert await pool.fetchval("SELECT flow_version FROM conversations") is not None


async def test_the_flows_handoff_team_is_the_conversations_team(settings, pool, clean, redis_client):
    """support.yaml says `handoff: {team: support}`: the escalation lands in that team's queue."""
    async with FakeTwilio() as fake, BusinessApi() as api:
        clock = ManualClock(MONDAY_10_BERLIN)
        async with running_gateway(flow_settings(settings, fake, api), clock=clock) as (rt, url):
            support = await pool.fetchval("INSERT INTO teams (name) VALUES ('support') RETURNING id")
            await say(url, fake, "i want to talk to a humann")

            async def routed():
                return await pool.fetchval("SELECT team_id FROM conversations WHERE mode = 'agent'")
            await wait_for(routed, timeout=20)
    assert await pool.fetchval("SELECT team_id FROM conversations") == support
    assert await pool.fetchval("SELECT content->>'why' FROM messages WHERE content->>'event' = 'team_routed'") \
        == "named by the escalation"


async def test_on_email_one_turn_is_one_mail(settings, pool, clean, redis_client):
    """The lookup's answer and "Anything else?" are two replies on SMS, one mail on email."""
    from gateway.devtools.fakes.smtp import FakeSmtpRelay
    from gateway.devtools.simulate_providers import simulated_mailgun_form

    async with FakeSmtpRelay(hostname="127.0.0.1") as relay, BusinessApi() as api:
        s = settings.with_(default_handler="flow", flows_dir=FLOWS, business_api_base=f"http://127.0.0.1:{api.port}",
                           smtp_host="127.0.0.1", smtp_port=relay.port, smtp_tls="none",
                           email_from="support@example.com", email_reply_domain="reply.example.com",
                           email_webhook_key="email-webhook-key")
        async with running_gateway(s) as (rt, url), aiohttp.ClientSession() as http:
            for n, text in enumerate(("hi", "1", "AB-12345"), 1):
                form = simulated_mailgun_form(s, sender="ana@customer.example", recipient="support@example.com",
                                              subject="my order", text=text)
                async with http.post(f"{url}/webhooks/email/inbound", data=form) as resp:
                    assert resp.status == 200

                async def answered(n=n):
                    return len(relay.messages) >= n
                await wait_for(answered, timeout=20, message=f"expected {n} mails, got {len(relay.messages)}")
            await asyncio.sleep(0.5)     # nothing more comes
    assert len(relay.messages) == 3
    last = relay.messages[2].message.get_body(("plain",)).get_content()
    assert "AB12345 is shipped" in last and "Anything else" in last
