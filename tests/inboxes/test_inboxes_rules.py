"""Inbox rules: address normalization, inbound candidates, a mailbox's signature, a new conversation
starting on its inbox's flow, an inbox's out-of-hours text, a chat site's inbox."""
from __future__ import annotations

import json

import aiohttp
import pytest

from gateway.devtools.fakes.twilio import FakeTwilio
from gateway.devtools.simulate_providers import post_twilio_inbound, twilio_inbound_params
from gateway.devtools.testing import running_gateway, wait_for
from gateway.domain import thread
from gateway.domain.identity import AddressError
from gateway.domain.types import Channel, Inbound
from gateway.inboxes import store as inboxes
from gateway.inboxes.model import addresses_of, normalize_address
from gateway.pipeline.ingest import ingest_inbound


def test_addresses_are_normalized_per_channel_and_provider():
    assert normalize_address("sms", "twilio", "+1 (555) 000-3333") == "+15550003333"
    assert normalize_address("sms", "twilio", "MG" + "a" * 32) == "MG" + "a" * 32
    assert normalize_address("whatsapp", "twilio", "whatsapp:+15550003333") == "+15550003333"
    assert normalize_address("whatsapp", "meta", " 207650463353033 ") == "207650463353033"
    assert normalize_address("email", "smtp", "Billing <Billing@Shop.Example>") == "billing@shop.example"
    assert normalize_address("webchat", "webchat", "shop.example") == "shop.example"
    for channel, provider, bad in (("whatsapp", "meta", "+15550003333"), ("email", "smtp", "nobody"),
                                   ("sms", "twilio", "hello"), ("api", "api", "a b")):
        with pytest.raises(AddressError):
            normalize_address(channel, provider, bad)


def test_inbound_candidates_name_every_address_of_ours_it_was_sent_to():
    mail = Inbound(Channel.EMAIL, "sendgrid", "<m1@x>", "ana@example.com", recipient="Billing+T1@Shop.Example",
                   extra={"to": ["billing+t1@shop.example"], "cc": ["sales@shop.example"],
                          "envelope": {"from": "ana@example.com", "to": ["support@shop.example"]}})
    assert addresses_of(mail) == ["billing@shop.example", "sales@shop.example", "support@shop.example"]
    sms = Inbound(Channel.SMS, "twilio", "SM1", "+14155550100", recipient="+15550003333",
                  raw={"MessagingServiceSid": "MG" + "b" * 32})
    assert addresses_of(sms) == ["+15550003333", "MG" + "b" * 32]


async def test_mail_to_a_mailbox_is_answered_from_it_with_its_signature(pool, clean):
    async with pool.acquire() as conn, conn.transaction():
        billing = await inboxes.create_inbox(conn, name="Billing", channel="email", provider="smtp",
                                             address="billing@shop.example", signature="Billing team\nShop Ltd")
        got = await ingest_inbound(conn, Inbound(
            Channel.EMAIL, "sendgrid", "<m2@x>", "ana@example.com", text="my invoice?",
            recipient="billing+x1@shop.example", extra={"to": ["billing+x1@shop.example"]}))
        assert got.inbox_id == billing["id"]
        mid = await thread.queue_outbound(conn, got.conversation_id, text="Here it is.", author_type="agent",
                                          html="<p>Here it is.</p>")
        row = await conn.fetchrow("SELECT body, content, sender_address, inbox_id FROM messages WHERE id = $1", mid)
    assert row["inbox_id"] == billing["id"] and row["sender_address"] == "billing@shop.example"
    assert row["body"] == "Here it is.\n\n-- \nBilling team\nShop Ltd"
    assert row["content"]["html"].endswith("<p>-- <br>Billing team<br>Shop Ltd</p>")


async def test_a_new_conversation_starts_on_its_inbox_flow(settings, pool, clean, redis_client,
                                                           sales_and_support_flows):
    flows = sales_and_support_flows
    async with FakeTwilio() as twilio:
        s = settings.with_(twilio_account_sid=twilio.account_sid, twilio_auth_token=twilio.auth_token,
                           twilio_from_number="+15550001111", twilio_api_base=twilio.base_url,
                           default_handler="flow", flows_dir=flows, default_flow="support")
        async with running_gateway(s) as (rt, url):
            async with pool.acquire() as conn:
                await inboxes.create_inbox(conn, name="Sales", channel="sms", provider="twilio",
                                           address="+15550003333", flow="sales")
            for customer, to in (("+14155550110", "+15550003333"), ("+14155550111", "+15550001111")):
                status, _ = await post_twilio_inbound(f"{url}/webhooks/twilio/inbound",
                                                      twilio_inbound_params(customer, to, "hi"), twilio.auth_token)
                assert status == 200

            async def two():
                posts = [r for r in twilio.requests if r.method == "POST"]
                return posts if len(posts) >= 2 else None
            sent = {r.value("To"): (r.value("From"), r.value("Body")) for r in await wait_for(two)}
    assert sent["+14155550110"] == ("+15550003333", "Welcome to sales! What are you looking for?")
    assert sent["+14155550111"][0] == "+15550001111" and "sales" not in sent["+14155550111"][1]


async def test_escalation_while_the_inbox_is_closed_says_its_out_of_hours_text(settings, pool, clean, redis_client):
    async with FakeTwilio() as twilio:
        s = settings.with_(twilio_account_sid=twilio.account_sid, twilio_auth_token=twilio.auth_token,
                           twilio_from_number="+15550001111", twilio_api_base=twilio.base_url,
                           default_handler="agent")
        async with running_gateway(s) as (rt, url):
            async with pool.acquire() as conn:
                await inboxes.create_inbox(conn, name="Night line", channel="sms", provider="twilio",
                                           address="+15550008888", hours={"timezone": "UTC", "closed_dates": []},
                                           out_of_hours_text="Night line is closed; we answer {when}.")
            status, _ = await post_twilio_inbound(f"{url}/webhooks/twilio/inbound",
                                                  twilio_inbound_params("+14155550112", "+15550008888", "my order is broken"),
                                                  twilio.auth_token)
            assert status == 200

            async def said():
                return [r for r in twilio.requests if r.method == "POST"]
            sent = (await wait_for(said))[0]
    assert sent.value("From") == "+15550008888" and sent.value("Body").startswith("Night line is closed; we answer")


async def test_a_chat_message_lands_in_the_inbox_of_the_site_the_widget_runs_on(settings, pool, clean, redis_client):
    s = settings.with_(chat_allowed_origins=("https://shop.example", "https://help.example"), default_handler="echo")
    async with running_gateway(s) as (rt, url):
        async with pool.acquire() as conn:
            shop = await inboxes.create_inbox(conn, name="Shop chat", channel="webchat", provider="webchat",
                                              address="shop.example")
        async with aiohttp.ClientSession() as http:
            for origin in ("https://shop.example", "https://help.example"):
                async with http.post(f"{url}/chat/session", json={}) as resp:
                    token = (await resp.json())["token"]
                async with http.ws_connect(f"{url.replace('http', 'ws', 1)}/chat/ws", headers={"Origin": origin}) as ws:
                    await ws.send_str(json.dumps({"type": "hello", "token": token, "last_seq": 0}))
                    await ws.send_str(json.dumps({"type": "message", "client_msg_id": "c1", "text": f"hi {origin}"}))
                    while True:   # until the echo comes back
                        frame = json.loads((await ws.receive(timeout=10)).data)
                        if frame.get("type") == "message" and frame.get("direction") == "out":
                            break
    rows = await pool.fetch("SELECT body, inbox_id FROM messages WHERE direction = 'in' ORDER BY id")
    default = await pool.fetchval("SELECT id FROM inboxes WHERE channel = 'webchat' AND is_default")
    assert [(r["body"], r["inbox_id"]) for r in rows] == [("hi https://shop.example", shop["id"]),
                                                          ("hi https://help.example", default)]


async def test_unknown_addresses_are_logged_unless_the_default_inbox_stands_for_every_address(pool, clean):
    from structlog.testing import capture_logs

    from gateway.app.settings import Settings
    from gateway.inboxes.defaults import sync_defaults

    async def to_us(sid: str, settings: Settings) -> list[dict]:
        await sync_defaults(pool, settings)
        with capture_logs() as logs:
            async with pool.acquire() as conn, conn.transaction():
                got = await ingest_inbound(conn, Inbound(Channel.SMS, "twilio", sid, "+14155550120",
                                                         text="hi", recipient="+15550009999"))
        assert got.inbox_id == await pool.fetchval("SELECT id FROM inboxes WHERE channel = 'sms' AND is_default")
        return [e for e in logs if "no inbox has" in e["event"]]

    sandbox = Settings(secret_key="s")                       # no sender in settings: one address, any number
    assert await to_us("SM-a", sandbox) == []
    live = Settings(secret_key="s", twilio_account_sid="AC" + "1" * 32, twilio_auth_token="t",
                    twilio_from_number="+15550001111")      # a known sender: another number is worth a line
    assert [e["recipient"] for e in await to_us("SM-b", live)] == ["+15550009999"]
