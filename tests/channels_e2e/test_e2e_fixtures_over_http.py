"""Every real-shaped provider fixture, posted signed through the real HTTP server.

Messages are stored once (posting twice changes nothing), statuses answer 200, unsupported events are
acknowledged and ignored, malformed payloads are 400 and store nothing.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.devtools.simulate_providers import post_meta_webhook, post_twilio_inbound
from gateway.devtools.testing import running_gateway

HERE = Path(__file__).resolve().parent.parent / "channels"
TWILIO = sorted((HERE / "twilio" / "fixtures").glob("*.json"))
META = sorted((HERE / "whatsapp" / "fixtures").glob("*.json"))
TOKEN = "fixture-auth-token"
SECRET = "fixture-app-secret"


@pytest.mark.parametrize("path", TWILIO, ids=lambda p: p.stem)
async def test_twilio_fixture_through_http(settings, pool, clean, redis_client, path):
    data = json.loads(path.read_text())
    params = [(k, v) for k, v in data.items()] if isinstance(data, dict) else [tuple(p) for p in data]
    s = settings.with_(twilio_account_sid="AC" + "0" * 32, twilio_auth_token=TOKEN, twilio_from_number="+14155550199")
    endpoint = "status" if path.stem.startswith("status__") else "inbound"
    async with running_gateway(s, roles=("http",)) as (rt, url):
        for _ in range(2):
            status, body = await post_twilio_inbound(f"{url}/webhooks/twilio/{endpoint}", params, TOKEN)
            assert status == 200, body
    stored = await pool.fetchval("SELECT count(*) FROM messages WHERE direction = 'in'")
    if endpoint == "inbound":
        assert stored == 1
        raw = await pool.fetchval("SELECT raw FROM messages")
        assert raw["MessageSid"] == dict(params)["MessageSid"]  # the audit copy keeps every parameter
    else:
        assert stored == 0


@pytest.mark.parametrize("path", META, ids=lambda p: p.stem)
async def test_meta_fixture_through_http(settings, pool, clean, redis_client, path):
    payload = json.loads(path.read_text())
    s = settings.with_(whatsapp_access_token="t", whatsapp_app_secret=SECRET, whatsapp_phone_number_id="106540352242922")
    async with running_gateway(s, roles=("http",)) as (rt, url):
        results = [await post_meta_webhook(f"{url}/webhooks/whatsapp", payload, SECRET) for _ in range(2)]
    stored = await pool.fetchval("SELECT count(*) FROM messages WHERE direction = 'in'")
    if path.stem.startswith("malformed__"):
        assert all(status == 400 for status, _ in results)
        assert stored == 0
        return
    assert all(status == 200 for status, _ in results)
    expected = sum(len(ch.get("value", {}).get("messages", []))
                   for e in payload["entry"] for ch in e["changes"] if ch.get("field") == "messages")
    assert stored == expected
