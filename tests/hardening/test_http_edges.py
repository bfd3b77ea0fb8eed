"""Small HTTP edges of issue 11: nosniff everywhere, a proxy that keeps the public URL's path prefix."""
from __future__ import annotations

import aiohttp

from gateway.channels.twilio.secrets import twilio_webhook_token
from gateway.channels.whatsapp.secrets import whatsapp_verify_token
from gateway.devtools.simulate_providers import post_twilio_form, twilio_inbound_params
from gateway.devtools.testing import free_port, running_gateway


async def test_verify_challenge_and_every_response_carry_nosniff(settings, pool, clean, redis_client):
    async with running_gateway(settings, roles=("http",)) as (rt, base):
        query = {"hub.mode": "subscribe", "hub.verify_token": whatsapp_verify_token(rt.settings),
                 "hub.challenge": "<script>alert(1)</script>"}
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/webhooks/whatsapp", params=query) as resp:
                assert resp.status == 200 and resp.content_type == "text/plain"
                assert resp.headers["X-Content-Type-Options"] == "nosniff"
            for path in ("/healthz", "/no/such/route", "/api/v1/conversations"):
                async with http.get(base + path) as resp:
                    assert resp.headers.get("X-Content-Type-Options") == "nosniff", path


async def test_proxy_keeping_the_public_path_prefix_reaches_the_routes(settings, pool, clean, redis_client):
    port = free_port()
    public = f"http://127.0.0.1:{port}/gw"
    async with running_gateway(settings.with_(public_url=public), roles=("http",), port=port) as (rt, base):
        token = twilio_webhook_token(rt.settings)
        # the proxy keeps /gw ...
        status, body = await post_twilio_form(f"{public}/webhooks/twilio/inbound",
                                              twilio_inbound_params("+14155550101", "+15005550006", "kept"),
                                              token, public)
        assert status == 200, body
        # ... or strips it: both are the URL Twilio signed
        status, body = await post_twilio_form(f"{base}/webhooks/twilio/inbound",
                                              twilio_inbound_params("+14155550102", "+15005550006", "stripped"),
                                              token, public)
        assert status == 200, body
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{public}/healthz") as resp:
                assert resp.status == 200
            async with http.head(f"{public}/chat/widget.js") as resp:
                assert resp.status == 200
    assert sorted(r["body"] for r in await pool.fetch("SELECT body FROM messages")) == ["kept", "stripped"]
