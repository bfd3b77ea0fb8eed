"""Attachment downloads for agents: WhatsApp media ids and Twilio media URLs fetched once, then stored."""
from __future__ import annotations

import aiohttp

from gateway.devtools.fakes.graph import FakeGraph
from gateway.devtools.fakes.twilio import FakeTwilio
from gateway.devtools.simulate_providers import (meta_inbound_payload, post_meta_webhook, post_twilio_inbound,
                                                 twilio_inbound_params)
from gateway.devtools.testing import running_gateway

ADMIN = {"Authorization": "Bearer admin-test-token"}
SECRET = "attach-app-secret"
PHONE_ID = "106540352242922"


async def get(url, headers=None):
    async with aiohttp.ClientSession() as http:
        async with http.get(url, headers=headers or {}) as resp:
            return resp.status, await resp.read(), resp.headers


async def test_whatsapp_media_is_fetched_from_the_graph_api_once(settings, pool, clean, redis_client):
    async with FakeGraph(phone_number_id=PHONE_ID) as graph:
        media_id = graph.add_media(b"JPEGDATA-1", "image/jpeg")
        s = settings.with_(whatsapp_access_token=graph.access_token, whatsapp_app_secret=SECRET,
                           whatsapp_phone_number_id=PHONE_ID, whatsapp_api_base=graph.api_base)
        async with running_gateway(s, roles=("http",)) as (rt, url):
            payload = meta_inbound_payload("14155550100", "", PHONE_ID, message={
                "type": "image", "image": {"id": media_id, "mime_type": "image/jpeg", "sha256": "x", "caption": "dent"}})
            assert (await post_meta_webhook(f"{url}/webhooks/whatsapp", payload, SECRET))[0] == 200
            conv, msg = await pool.fetchrow("SELECT conversation_id, id FROM messages")
            path = f"{url}/api/v1/conversations/{conv}/messages/{msg}/attachments/0"
            assert (await get(path))[0] == 401
            first = await get(path, ADMIN)
            calls = len(graph.requests)
            second = await get(path, ADMIN)
            missing = await get(f"{url}/api/v1/conversations/{conv}/messages/{msg}/attachments/1", ADMIN)
    assert first[0] == 200 and first[1] == b"JPEGDATA-1" and first[2]["Content-Type"] == "image/jpeg"
    assert second[1] == b"JPEGDATA-1" and len(graph.requests) == calls  # served from the stored copy
    assert missing[0] == 404
    assert await pool.fetchval("SELECT count(*) FROM blobs") == 1


async def test_twilio_mms_media_is_fetched_with_basic_auth(settings, pool, clean, redis_client):
    async with FakeTwilio() as fake:
        media_url = fake.add_media("photo1", b"PNGDATA", "image/png")
        s = settings.with_(twilio_account_sid=fake.account_sid, twilio_auth_token=fake.auth_token,
                           twilio_from_number="+15550001111", twilio_api_base=fake.base_url)
        async with running_gateway(s, roles=("http",)) as (rt, url):
            params = twilio_inbound_params("+14155550100", "+15550001111", "look", media_urls=[media_url])
            assert (await post_twilio_inbound(f"{url}/webhooks/twilio/inbound", params, fake.auth_token))[0] == 200
            conv, msg = await pool.fetchrow("SELECT conversation_id, id FROM messages")
            status, body, headers = await get(f"{url}/api/v1/conversations/{conv}/messages/{msg}/attachments/0", ADMIN)
            integration_token = None
            async with pool.acquire() as c:
                from gateway.domain import auth
                _, integration_token = await auth.create_token(c, name="i", role="integration")
            forbidden = await get(f"{url}/api/v1/conversations/{conv}/messages/{msg}/attachments/0",
                                  {"Authorization": f"Bearer {integration_token}"})
    assert status == 200 and body == b"PNGDATA"
    assert forbidden[0] == 403
    media_calls = [r for r in fake.requests if r.path.startswith("/media/")]
    assert len(media_calls) == 1 and media_calls[0].headers.get("Authorization", "").startswith("Basic ")
