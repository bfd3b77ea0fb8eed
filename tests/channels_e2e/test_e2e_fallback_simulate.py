"""Channel fallback when WhatsApp cannot reach the customer, and `gateway simulate` against a live server."""
from __future__ import annotations

import asyncio
import subprocess
import sys

from gateway.devtools.fakes.graph import FakeGraph
from gateway.devtools.fakes.twilio import FakeTwilio
from gateway.devtools.simulate_providers import meta_inbound_payload, post_meta_webhook
from gateway.devtools.testing import running_gateway, settings_env, wait_for
from gateway.domain import thread

APP_SECRET = "app-secret-for-tests"
PHONE_ID = "106540352242922"


async def test_whatsapp_undeliverable_falls_back_to_sms_once(settings, pool, clean, redis_client):
    async with FakeGraph(phone_number_id=PHONE_ID) as graph, FakeTwilio() as twilio:
        s = settings.with_(whatsapp_access_token=graph.access_token, whatsapp_app_secret=APP_SECRET,
                           whatsapp_phone_number_id=PHONE_ID, whatsapp_api_base=graph.api_base,
                           twilio_account_sid=twilio.account_sid, twilio_auth_token=twilio.auth_token,
                           twilio_from_number="+15550001111", twilio_api_base=twilio.base_url)
        async with running_gateway(s, roles=("http",)) as (rt, url):
            await post_meta_webhook(f"{url}/webhooks/whatsapp",
                                    meta_inbound_payload("14155550100", "hi", PHONE_ID), APP_SECRET)
            conv = await pool.fetchval("SELECT id FROM conversations")
            await rt.processor.drain(conv)  # agent handler: no bot reply
            graph.fail_next(1, code=131026)  # not a WhatsApp user any more
            async with pool.acquire() as c, c.transaction():
                await thread.queue_outbound(c, conv, text="Your refund is on its way", author_type="agent")
            await rt.outbox.send_due()
            await rt.outbox.send_due()
    assert len(graph.requests) == 1 and len(twilio.requests) == 1
    assert twilio.requests[0].value("Body") == "Your refund is on its way"
    assert twilio.requests[0].value("To") == "+14155550100"
    rows = await pool.fetch("SELECT channel, status, error_code, content FROM messages WHERE direction = 'out' "
                            "ORDER BY seq")
    assert [(r["channel"], r["status"], r["error_code"]) for r in rows] == [
        ("whatsapp", "failed", "131026"), ("sms", "queued", None)]
    assert rows[1]["content"]["fallback_tried"] == ["whatsapp"]


async def test_gateway_simulate_posts_signed_webhooks_in_sandbox_mode(settings, pool, clean, redis_client):
    s = settings.with_(default_handler="echo")
    async with running_gateway(s) as (rt, url):
        env = settings_env(s)
        for channel, sender in (("sms", "+14155550100"), ("whatsapp", "+14155550100"),
                                ("whatsapp-cloud", "+14155550100"), ("email", "ana@example.com")):
            proc = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "gateway", "simulate", channel,
                                                            "--from", sender, "--text", f"via {channel}", "--url", url],
                                           env=env, capture_output=True, text=True, timeout=60)
            assert proc.returncode == 0, proc.stdout + proc.stderr

        async def answered():
            return await pool.fetchval("SELECT count(*) FROM messages WHERE direction = 'out'") == 4
        await wait_for(answered)
    rows = await pool.fetch("SELECT channel, body FROM messages WHERE direction = 'in' ORDER BY seq")
    assert sorted((r["channel"], r["body"]) for r in rows) == sorted([
        ("sms", "via sms"), ("whatsapp", "via whatsapp"), ("whatsapp", "via whatsapp-cloud"), ("email", "via email")])
    assert await pool.fetchval("SELECT count(*) FROM contacts") == 2  # the phone's and the email's
