"""Inboxes end to end: two Twilio numbers and two WhatsApp phone number ids against the fake
providers; each customer is answered from the address they wrote to."""
from __future__ import annotations

import aiohttp

from gateway.devtools.fakes.graph import FakeGraph
from gateway.devtools.fakes.twilio import FakeTwilio
from gateway.devtools.simulate_providers import (meta_inbound_payload, post_meta_webhook, post_twilio_inbound,
                                                 twilio_inbound_params)
from gateway.devtools.testing import running_gateway, wait_for

SUPPORT_SMS = "+15550001111"      # TWILIO_FROM_NUMBER: the default SMS inbox
SALES_SMS = "+15550003333"        # added through the API
SUPPORT_WA = "106540352242922"    # WHATSAPP_PHONE_NUMBER_ID: the default WhatsApp inbox
SPAIN_WA = "207650463353033"      # added through the API
APP_SECRET = "test_app_secret_0123456789abcdef"
ADMIN = {"Authorization": "Bearer admin-test-token"}


def both_settings(settings, twilio: FakeTwilio, graph: FakeGraph, **kw):
    return settings.with_(
        twilio_account_sid=twilio.account_sid, twilio_auth_token=twilio.auth_token, twilio_from_number=SUPPORT_SMS,
        twilio_api_base=twilio.base_url, whatsapp_access_token=graph.access_token, whatsapp_app_secret=APP_SECRET,
        whatsapp_verify_token="verify", whatsapp_phone_number_id=SUPPORT_WA, whatsapp_api_base=graph.api_base,
        **{"default_handler": "echo", **kw})


async def api(method: str, url: str, json=None, headers=ADMIN):
    async with aiohttp.ClientSession() as http:
        async with http.request(method, url, json=json, headers=headers) as resp:
            return resp.status, (await resp.json() if resp.content_type == "application/json" else None)


async def sms(url, twilio, customer, to, text):
    status, _ = await post_twilio_inbound(f"{url}/webhooks/twilio/inbound",
                                          twilio_inbound_params(customer, to, text), twilio.auth_token)
    assert status == 200


async def whatsapp(url, customer, phone_number_id, text):
    status, _ = await post_meta_webhook(f"{url}/webhooks/whatsapp",
                                        meta_inbound_payload(customer, text, phone_number_id), APP_SECRET)
    assert status == 200


async def twilio_sends(twilio, n):
    async def enough():
        posts = [r for r in twilio.requests if r.method == "POST"]
        return posts if len(posts) >= n else None
    return {(r.value("To"), r.value("Body")): r.value("From") for r in await wait_for(enough)}


async def graph_sends(graph, n):
    async def enough():
        return graph.sent if len(graph.sent) >= n else None
    return {(m["to"], m["text"]["body"]): m["_phone_number_id"] for m in await wait_for(enough)}


async def test_each_customer_is_answered_from_the_address_they_wrote_to(settings, pool, clean, redis_client):
    async with FakeTwilio() as twilio, FakeGraph(phone_number_id=SUPPORT_WA) as graph:
        graph.phone_number_ids.add(SPAIN_WA)
        async with running_gateway(both_settings(settings, twilio, graph)) as (rt, url):
            status, listed = await api("GET", f"{url}/api/v1/inboxes")
            assert status == 200
            defaults = {i["channel"]: i for i in listed if i["is_default"]}
            assert defaults["sms"]["address"] == SUPPORT_SMS and defaults["whatsapp"]["address"] == SUPPORT_WA
            assert defaults["whatsapp"]["provider"] == "meta"
            status, sales = await api("POST", f"{url}/api/v1/inboxes", {
                "name": "Sales", "channel": "sms", "address": "+1 555 000 3333"})
            assert status == 201 and sales["address"] == SALES_SMS and sales["provider"] == "twilio"
            status, spain = await api("POST", f"{url}/api/v1/inboxes", {
                "name": "WhatsApp Spain", "channel": "whatsapp", "provider": "meta", "address": SPAIN_WA})
            assert status == 201
            assert (await api("POST", f"{url}/api/v1/inboxes", {
                "name": "Sales again", "channel": "sms", "address": SALES_SMS}))[0] == 409

            await sms(url, twilio, "+14155550101", SUPPORT_SMS, "support please")
            await sms(url, twilio, "+14155550102", SALES_SMS, "a quote please")
            await whatsapp(url, "+34600000001", SUPPORT_WA, "hola support")
            await whatsapp(url, "+34600000002", SPAIN_WA, "hola spain")
            assert await twilio_sends(twilio, 2) == {
                ("+14155550101", "You said: support please"): SUPPORT_SMS,
                ("+14155550102", "You said: a quote please"): SALES_SMS}
            assert await graph_sends(graph, 2) == {
                ("34600000001", "You said: hola support"): SUPPORT_WA,
                ("34600000002", "You said: hola spain"): SPAIN_WA}

            # the thread says which inbox each message went through; the queue filters by inbox
            conv = await pool.fetchval("""SELECT c.id FROM conversations c
                                          JOIN identities i ON i.contact_id = c.contact_id
                                          WHERE i.address = '+14155550102'""")
            status, page = await api("GET", f"{url}/api/v1/conversations/{conv}/messages")
            assert [(m["direction"], m["inbox_id"]) for m in page["messages"]] == [("in", sales["id"]), ("out", sales["id"])]
            status, detail = await api("GET", f"{url}/api/v1/conversations/{conv}")
            assert detail["inbox_id"] == sales["id"]
            status, page = await api("GET", f"{url}/api/v1/conversations?inbox_id={spain['id']}")
            assert status == 200 and len(page["conversations"]) == 1
            assert page["conversations"][0]["inbox_id"] == spain["id"]
            status, metrics = await api("GET", f"{url}/api/v1/metrics/summary")
            per_inbox = {r["name"]: (r["inbound"], r["outbound"], r["conversations"]) for r in metrics["per_inbox"]}
            assert per_inbox == {"SMS": (1, 1, 1), "Sales": (1, 1, 1), "WhatsApp": (1, 1, 1), "WhatsApp Spain": (1, 1, 1)}


async def test_unknown_address_goes_to_the_default_inbox(settings, pool, clean, redis_client):
    async with FakeTwilio() as twilio, FakeGraph(phone_number_id=SUPPORT_WA) as graph:
        async with running_gateway(both_settings(settings, twilio, graph)) as (rt, url):
            await sms(url, twilio, "+14155550103", "+15550009999", "to a number we never set up")
            assert await twilio_sends(twilio, 1) == {
                ("+14155550103", "You said: to a number we never set up"): SUPPORT_SMS}
            default = await pool.fetchval("SELECT id FROM inboxes WHERE channel = 'sms' AND is_default")
            assert await pool.fetchval("SELECT inbox_id FROM messages WHERE direction = 'in'") == default


PROMO = """
name: promo
purpose: transactional
quiet_hours: false
entry: {event: order_shipped}
steps:
  - {id: tell, send: {template: shipped, channels: [sms], inbox: Marketing}}
templates:
  shipped: {text: "Your order is on its way"}
"""


async def test_agent_replies_journeys_and_escalations_follow_the_inbox(settings, pool, clean, redis_client, tmp_path):
    (tmp_path / "flows" / "journeys").mkdir(parents=True)
    (tmp_path / "flows" / "journeys" / "promo.yaml").write_text(PROMO)
    async with FakeTwilio() as twilio, FakeGraph(phone_number_id=SUPPORT_WA) as graph:
        s = both_settings(settings, twilio, graph).with_(default_handler="agent", flows_dir=tmp_path / "flows")
        async with running_gateway(s) as (rt, url):
            status, team = await api("POST", f"{url}/api/v1/teams", {"name": "sales"})
            assert status == 201
            status, sales = await api("POST", f"{url}/api/v1/inboxes", {
                "name": "Sales", "channel": "sms", "address": SALES_SMS, "team_id": team["id"]})
            assert status == 201 and sales["team_id"] == team["id"]
            status, marketing = await api("POST", f"{url}/api/v1/inboxes", {
                "name": "Marketing", "channel": "sms", "address": "+15550004444"})
            assert status == 201
            support = next(i for i in (await api("GET", f"{url}/api/v1/inboxes?channel=sms"))[1] if i["is_default"])

            # escalations: the Sales inbox's team gets its customers, the default inbox has no team
            await sms(url, twilio, "+14155550104", SALES_SMS, "I want to buy")
            await sms(url, twilio, "+14155550105", SUPPORT_SMS, "my order is late")
            convs = {}
            for customer in ("+14155550104", "+14155550105"):
                async def escalated(customer=customer):
                    return await pool.fetchrow(
                        """SELECT c.id, c.team_id, c.mode FROM conversations c JOIN identities i ON i.contact_id = c.contact_id
                           WHERE i.address = $1 AND c.mode = 'agent'""", customer)
                convs[customer] = await wait_for(escalated)
            assert convs["+14155550104"]["team_id"] == team["id"]
            assert convs["+14155550105"]["team_id"] is None

            # an agent's reply leaves from the inbox the customer used, or from the one the agent picks
            buyer = convs["+14155550104"]["id"]
            status, sent = await api("POST", f"{url}/api/v1/conversations/{buyer}/messages", {"text": "Hello from sales"})
            assert status == 201 and sent["message"]["inbox_id"] == sales["id"]
            status, sent = await api("POST", f"{url}/api/v1/conversations/{buyer}/messages",
                                     {"text": "Support here", "inbox_id": support["id"]})
            assert status == 201 and sent["message"]["inbox_id"] == support["id"]
            assert (await api("POST", f"{url}/api/v1/conversations/{buyer}/messages",
                              {"text": "x", "inbox_id": support["id"], "channel": "email"}))[0] == 422
            assert (await api("POST", f"{url}/api/v1/conversations/{buyer}/messages",
                              {"text": "x", "inbox_id": 999999}))[0] == 422

            # a journey sends from the inbox it names (to someone no agent is talking to: journeys wait for agents)
            status, _ = await api("POST", f"{url}/api/v1/events", {
                "event_id": "ship-1", "name": "order_shipped", "contact": {"phone": "+14155550107"}})
            assert status == 201
            sends = await twilio_sends(twilio, 3)
    assert sends == {("+14155550104", "Hello from sales"): SALES_SMS,
                     ("+14155550104", "Support here"): SUPPORT_SMS,
                     ("+14155550107", "Your order is on its way"): "+15550004444"}
    assert marketing["address"] == "+15550004444"


async def test_an_agent_may_send_only_from_inboxes_of_their_teams(settings, pool, clean, redis_client):
    async with FakeTwilio() as twilio, FakeGraph(phone_number_id=SUPPORT_WA) as graph:
        async with running_gateway(both_settings(settings, twilio, graph, default_handler="agent")) as (rt, url):
            _, alpha = await api("POST", f"{url}/api/v1/teams", {"name": "alpha"})
            _, beta = await api("POST", f"{url}/api/v1/teams", {"name": "beta"})
            _, agent = await api("POST", f"{url}/api/v1/agents", {"name": "ann", "team_ids": [alpha["id"]]})
            _, token = await api("POST", f"{url}/api/v1/agents/{agent['id']}/tokens", {})
            as_ann = {"Authorization": f"Bearer {token['token']}"}
            _, theirs = await api("POST", f"{url}/api/v1/inboxes", {
                "name": "Beta line", "channel": "sms", "address": "+15550005555", "team_id": beta["id"]})
            _, ours = await api("POST", f"{url}/api/v1/inboxes", {
                "name": "Alpha line", "channel": "sms", "address": "+15550006666", "team_id": alpha["id"]})
            await sms(url, twilio, "+14155550106", SUPPORT_SMS, "hello")

            async def conv():
                return await pool.fetchval("SELECT id FROM conversations WHERE mode = 'agent'")
            cid = await wait_for(conv)
            status, body = await api("POST", f"{url}/api/v1/conversations/{cid}/messages",
                                     {"text": "x", "inbox_id": theirs["id"]}, headers=as_ann)
            assert status == 422 and body["error"]["code"] == "unknown_inbox"
            status, body = await api("POST", f"{url}/api/v1/conversations/{cid}/messages",
                                     {"text": "from alpha", "inbox_id": ours["id"]}, headers=as_ann)
            assert status == 201, body
            assert await twilio_sends(twilio, 1) == {("+14155550106", "from alpha"): "+15550006666"}
            # agents see inboxes but cannot change them
            assert (await api("GET", f"{url}/api/v1/inboxes", headers=as_ann))[0] == 200
            assert (await api("PATCH", f"{url}/api/v1/inboxes/{ours['id']}", {"name": "y"}, headers=as_ann))[0] == 403


async def test_an_inbox_with_its_own_twilio_account_sends_with_it_and_never_shows_it(settings, pool, clean,
                                                                                     redis_client):
    franchise_sid, franchise_token = "AC" + "2" * 32, "franchise-secret-token"
    async with FakeTwilio() as twilio, FakeGraph(phone_number_id=SUPPORT_WA) as graph:
        twilio.accounts[franchise_sid] = franchise_token
        async with running_gateway(both_settings(settings, twilio, graph)) as (rt, url):
            status, franchise = await api("POST", f"{url}/api/v1/inboxes", {
                "name": "Franchise", "channel": "sms", "address": "+15550007777",
                "credentials": {"account_sid": franchise_sid, "auth_token": franchise_token}})
            assert status == 201 and franchise["has_credentials"] is True
            assert franchise_token not in str(await api("GET", f"{url}/api/v1/inboxes"))
            stored = await pool.fetchval("SELECT credentials FROM inboxes WHERE id = $1", franchise["id"])
            assert franchise_token.encode() not in stored and franchise_sid.encode() not in stored
            assert (await api("PATCH", f"{url}/api/v1/inboxes/{franchise['id']}",
                              {"credentials": {"password": "x"}}))[0] == 400   # not a Twilio field

            # the franchise account signs the webhooks of its number with its own token
            params = twilio_inbound_params("+14155550108", "+15550007777", "hi franchise", account_sid=franchise_sid)
            inbound = f"{url}/webhooks/twilio/inbound"
            assert (await post_twilio_inbound(inbound, params, twilio.auth_token))[0] == 403
            assert (await post_twilio_inbound(inbound, params, franchise_token))[0] == 200
            await twilio_sends(twilio, 1)
    sent = [r for r in twilio.requests if r.method == "POST"][0]
    assert f"/Accounts/{franchise_sid}/" in sent.path and sent.value("From") == "+15550007777"
