"""What the customer actually got is kept on the message: an SMS bot turn with buttons goes out as a
numbered menu, and the messages API shows exactly the Body the fake Twilio received."""
from __future__ import annotations

from pathlib import Path

import aiohttp

from gateway.devtools.fakes.twilio import FakeTwilio
from gateway.devtools.simulate_providers import post_twilio_inbound, twilio_inbound_params
from gateway.devtools.testing import running_gateway, wait_for

OUR = "+15550001111"
CUSTOMER = "+14155550100"
FLOWS = Path(__file__).resolve().parents[2] / "flows"
ADMIN = {"Authorization": "Bearer admin-test-token"}


async def test_sms_menu_as_sent_is_what_the_messages_api_shows(settings, pool, clean, redis_client):
    async with FakeTwilio() as fake:
        s = settings.with_(default_handler="flow", flows_dir=FLOWS, twilio_account_sid=fake.account_sid,
                           twilio_auth_token=fake.auth_token, twilio_from_number=OUR,
                           twilio_api_base=fake.base_url)
        async with running_gateway(s) as (rt, url):
            status, _ = await post_twilio_inbound(f"{url}/webhooks/twilio/inbound",
                                                  twilio_inbound_params(CUSTOMER, OUR, "hi"), fake.auth_token)
            assert status == 200

            async def sent():
                return await pool.fetchrow(
                    "SELECT conversation_id, id FROM messages WHERE direction = 'out' AND provider_message_id IS NOT NULL")
            row = await wait_for(sent, timeout=30)
            received = [r.value("Body") for r in fake.requests if r.method == "POST"]
            assert len(received) == 1 and "1. Order status" in received[0]   # the menu went out as text
            async with aiohttp.ClientSession(headers=ADMIN) as http:
                async with http.get(f"{url}/api/v1/conversations/{row['conversation_id']}/messages") as resp:
                    assert resp.status == 200, await resp.text()
                    messages = (await resp.json())["messages"]
    out = next(m for m in messages if m["id"] == row["id"])
    assert out["sent_text"] == received[0]
    assert out["body"] == "Hi! How can I help?"            # the bot's words stay the body
    assert out["content"]["sent_text"] == received[0]
    inbound = next(m for m in messages if m["direction"] == "in")
    assert inbound["sent_text"] is None
