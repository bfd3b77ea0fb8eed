"""The full story through the public API: a customer escalates, an agent claims and replies, the
reply is delivered (API channel, signed webhook), the agent resolves, and the metrics are right."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import aiohttp
import pytest
from inbox_support import Api, BusinessWebhook

from gateway.devtools.testing import running_gateway, wait_for

SECRET = "story-secret"


@pytest.fixture
async def story(settings, pool, inbox_clean, redis_client):
    async with BusinessWebhook(SECRET) as hook:
        s = settings.with_(default_handler="agent", api_channel_webhook_url=hook.url,
                           api_channel_webhook_secret=SECRET)
        async with running_gateway(s) as (rt, url), aiohttp.ClientSession() as http:
            yield rt, Api(http, url, pool), hook


async def customer_says(api: Api, token: str, cmid: str, text: str) -> dict:
    created = await api.ok("POST", "/api/v1/inbound", token, expect=201,
                           json={"client_message_id": cmid, "contact": {"external_id": "cust-1", "name": "Ana"},
                                 "text": text})

    async def processed():
        return await api.pool.fetchval("SELECT processed_at IS NOT NULL FROM messages WHERE id = $1",
                                       created["message_id"])
    await wait_for(processed)
    return created


async def test_customer_escalates_agent_claims_replies_resolves_and_metrics_add_up(story):
    rt, api, hook = story
    started = datetime.now(timezone.utc) - timedelta(seconds=1)
    integration = await api.token("integration")
    team = await api.team("support")
    agent_id, agent = await api.agent("bruno", [team])

    created = await customer_says(api, integration, "m-1", "My parcel never arrived")
    cid = created["conversation_id"]
    queue = await api.ok("GET", "/api/v1/conversations", agent, params={"mode": "agent", "unassigned": "true"})
    assert [c["id"] for c in queue["conversations"]] == [cid]
    assert queue["conversations"][0]["waiting_since"] is not None

    claimed = await api.ok("POST", f"/api/v1/conversations/{cid}/claim", agent)
    assert claimed["assignee"]["id"] == agent_id
    feed = await api.http.ws_connect(f"{api.url}/api/v1/stream", params={"access_token": agent})

    sent = await api.ok("POST", f"/api/v1/conversations/{cid}/messages", agent, expect=201,
                        json={"text": "Sorry about that, Ana. Let me check."}, headers={"Idempotency-Key": "r-1"})
    assert sent["message"]["channel"] == "api" and sent["message"]["author_id"] == agent_id
    retry = await api.ok("POST", f"/api/v1/conversations/{cid}/messages", agent, expect=200,
                         json={"text": "Sorry about that, Ana. Let me check."}, headers={"Idempotency-Key": "r-1"})
    assert retry["duplicate"] is True and retry["message"]["id"] == sent["message"]["id"]

    async def delivered():
        return [r for r in hook.received if r["text"].startswith("Sorry about that")]
    await wait_for(delivered)
    assert hook.rejected == 0 and len(await delivered()) == 1, "the idempotent retry must not send twice"
    assert hook.received[0]["to"] == "cust-1"

    async def status_delivered():
        page = await api.ok("GET", f"/api/v1/conversations/{cid}/messages", agent)
        return [m for m in page["messages"] if m["id"] == sent["message"]["id"] and m["status"] == "delivered"]
    await wait_for(status_delivered)
    pushed = []
    while not any(e["type"] == "message.status" and e.get("status") == "delivered" for e in pushed):
        pushed.append(await feed.receive_json(timeout=10))
    assert {"message.created", "message.status"} <= {e["type"] for e in pushed}
    assert all(e.get("message_id") == sent["message"]["id"] for e in pushed if e["type"].startswith("message."))
    await feed.close()

    await customer_says(api, integration, "m-2", "Thanks!")
    waiting = await api.ok("GET", f"/api/v1/conversations/{cid}", agent)
    assert waiting["waiting_since"] is not None, "a new customer message puts it back in the waiting queue"

    resolved = await api.ok("POST", f"/api/v1/conversations/{cid}/resolve", agent, json={"csat": True})
    assert resolved["conversation"]["status"] == "resolved" and resolved["csat"]["sent"] is True

    async def csat_delivered():
        return [r for r in hook.received if "rate" in r["text"]]
    await wait_for(csat_delivered)

    episode = await api.pool.fetchrow("SELECT * FROM episodes WHERE conversation_id = $1", cid)
    assert episode["escalated_at"] <= episode["first_response_at"] <= episode["resolved_at"]
    assert episode["resolved_by"] == agent_id and episode["handled_by_bot_only"] is False

    history = await api.ok("GET", f"/api/v1/conversations/{cid}/messages", agent)
    events = [m["content"].get("event") for m in history["messages"] if m["kind"] == "event"]
    assert events == ["escalated", "claimed", "resolved"]
    assert [m["seq"] for m in history["messages"]] == list(range(1, len(history["messages"]) + 1))

    until = datetime.now(timezone.utc) + timedelta(seconds=1)
    metrics = await api.ok("GET", "/api/v1/metrics/summary",
                           params={"since": started.isoformat(), "until": until.isoformat()})
    frt = (episode["first_response_at"] - episode["escalated_at"]).total_seconds()
    assert metrics["first_response_seconds"]["count"] == 1
    assert metrics["first_response_seconds"]["average"] == pytest.approx(frt, abs=0.01)
    res = (episode["resolved_at"] - episode["opened_at"]).total_seconds()
    assert metrics["resolution_seconds"]["average"] == pytest.approx(res, abs=0.01)
    assert metrics["bot_containment"] == {"episodes": 1, "bot_only": 0, "rate": 0.0}
    assert metrics["per_channel"] == [{"channel": "api", "inbound": 2, "outbound": 2}]
    assert metrics["per_agent"] == [{"agent_id": agent_id, "name": "bruno", "replies": 1, "resolved": 1}]

    audit = await api.ok("GET", "/api/v1/audit", params={"conversation_id": str(cid)})
    assert [e["action"] for e in reversed(audit["entries"])] == ["claim", "reply", "resolve"]
    assert all(e["actor_id"] == agent_id and e["actor_type"] == "agent" for e in audit["entries"])

    # the customer comes back: a new episode, in the queue again
    await customer_says(api, integration, "m-3", "One more thing")
    again = await api.ok("GET", f"/api/v1/conversations/{cid}", agent)
    assert again["status"] == "open" and again["episodes"] == 2 and again["assignee_id"] is None


async def test_reply_without_any_route_explains_each_channel(story):
    rt, api, hook = story
    integration = await api.token("integration")
    created = await customer_says(api, integration, "m-1", "hi")
    cid = created["conversation_id"]
    _, agent = await api.agent("carla")
    status, body = await api.call("POST", f"/api/v1/conversations/{cid}/messages", agent,
                                  json={"text": "by sms please", "channel": "sms"})
    assert status == 409 and body["error"]["code"] == "no_route"
    assert body["error"]["reasons"] == {"sms": "no_address"}
    options = await api.ok("GET", f"/api/v1/conversations/{cid}/channels", agent)
    assert options["default"] == "api" and [o["channel"] for o in options["available"]] == ["api"]
    assert await api.pool.fetchval("SELECT count(*) FROM messages WHERE direction = 'out'") == 0


async def test_snooze_wakes_by_timer_and_on_customer_message(story):
    rt, api, hook = story
    integration = await api.token("integration")
    cid = (await customer_says(api, integration, "m-1", "hi"))["conversation_id"]
    _, agent = await api.agent("dora")
    status, body = await api.call("POST", f"/api/v1/conversations/{cid}/snooze", agent,
                                  json={"until": "2030-01-01T10:00:00"})
    assert status == 400 and "offset" in body["error"]["message"], "naive datetimes are rejected"

    soon = datetime.now(timezone.utc) + timedelta(seconds=1)
    snoozed = await api.ok("POST", f"/api/v1/conversations/{cid}/snooze", agent, json={"until": soon.isoformat()})
    assert snoozed["status"] == "snoozed"
    listed = await api.ok("GET", "/api/v1/conversations", agent, params={"status": "snoozed"})
    assert [c["id"] for c in listed["conversations"]] == [cid]

    async def awake():
        return await api.pool.fetchval("SELECT status = 'open' FROM conversations WHERE id = $1", cid)
    await wait_for(awake, timeout=10)

    later = datetime.now(timezone.utc).astimezone(timezone(timedelta(hours=-5))) + timedelta(hours=1)
    await api.ok("POST", f"/api/v1/conversations/{cid}/snooze", agent, json={"until": later.isoformat()})
    await customer_says(api, integration, "m-2", "still there?")
    conv = await api.ok("GET", f"/api/v1/conversations/{cid}", agent)
    assert conv["status"] == "open" and conv["snoozed_until"] is None
    assert await api.pool.fetchval("SELECT count(*) FROM timers WHERE kind = 'snooze' AND state = 'pending'") == 0


async def test_notes_labels_canned_reopen_and_hand_back(story):
    rt, api, hook = story
    integration = await api.token("integration")
    cid = (await customer_says(api, integration, "m-1", "hi"))["conversation_id"]
    agent_id, agent = await api.agent("eva")
    await api.ok("PATCH", f"/api/v1/contacts/{(await api.ok('GET', f'/api/v1/conversations/{cid}'))['contact_id']}",
                 agent, json={"attributes": {"plan": "gold"}})
    canned = await api.ok("POST", "/api/v1/canned-responses", expect=201, json={
        "short_code": "hello", "body": "Hi {{contact.name}}, {{agent.name}} here. Your {{contact.attributes.plan}} "
                                      "plan renews on {{date}}."})
    status, body = await api.call("POST", f"/api/v1/conversations/{cid}/messages", agent,
                                  json={"canned_response_id": canned["id"]})
    assert status == 422 and "date" in body["error"]["message"]
    sent = await api.ok("POST", f"/api/v1/conversations/{cid}/messages", agent, expect=201,
                        json={"canned_response_id": canned["id"], "variables": {"date": "May 1"}})
    assert sent["message"]["body"] == "Hi Ana, eva here. Your gold plan renews on May 1."

    note = await api.ok("POST", f"/api/v1/conversations/{cid}/notes", agent, expect=201,
                        json={"text": "VIP, be nice"})
    assert note["kind"] == "note" and note["direction"] == "internal"
    labels = await api.ok("POST", f"/api/v1/conversations/{cid}/labels", agent,
                          json={"add": ["VIP", "billing"], "remove": []})
    assert labels["labels"] == ["billing", "vip"]
    assert (await api.ok("POST", f"/api/v1/conversations/{cid}/labels", agent,
                         json={"remove": ["billing"]}))["labels"] == ["vip"]
    assert [c["id"] for c in (await api.ok("GET", "/api/v1/conversations", agent,
                                           params={"label": "vip"}))["conversations"]] == [cid]

    await api.ok("POST", f"/api/v1/conversations/{cid}/resolve", agent, json={})
    status, body = await api.call("POST", f"/api/v1/conversations/{cid}/resolve", agent, json={})
    assert status == 409
    reopened = await api.ok("POST", f"/api/v1/conversations/{cid}/reopen", agent)
    assert reopened["status"] == "open" and reopened["episode"]["resolved_at"] is None

    status, body = await api.call("POST", f"/api/v1/conversations/{cid}/handback", agent, json={"flow_state": "menu"})
    assert status == 409 and body["error"]["code"] == "no_bot"  # this gateway runs without bot flows
    await wait_for(lambda: _delivered_count(hook, 1))
    assert all(r.get("text") != "VIP, be nice" for r in hook.received), "a private note is never sent"


async def test_hand_back_puts_the_bot_in_the_chosen_state_and_it_speaks(settings, pool, inbox_clean, redis_client):
    async with BusinessWebhook(SECRET) as hook:
        s = settings.with_(default_handler="flow", api_channel_webhook_url=hook.url, api_channel_webhook_secret=SECRET)
        async with running_gateway(s) as (rt, url), aiohttp.ClientSession() as http:
            api = Api(http, url, pool)
            integration = await api.token("integration")
            cid = (await customer_says(api, integration, "m-1", "I want to talk to a human"))["conversation_id"]

            async def escalated():
                return await pool.fetchval("SELECT mode = 'agent' FROM conversations WHERE id = $1", cid)
            await wait_for(escalated)
            agent_id, agent = await api.agent("eva")
            await api.ok("POST", f"/api/v1/conversations/{cid}/claim", agent)
            status, body = await api.call("POST", f"/api/v1/conversations/{cid}/handback", agent,
                                          json={"flow_state": "no_such_state"})
            assert status == 422
            back = await api.ok("POST", f"/api/v1/conversations/{cid}/handback", agent, json={"flow_state": "menu"})
            assert back["mode"] == "bot" and back["flow_state"] == "menu" and back["assignee_id"] is None

            async def menu_sent():
                return any("How can I help" in (r.get("text") or "") for r in hook.received)
            await wait_for(menu_sent)
            await customer_says(api, integration, "m-2", "2")  # the bot answers again: the FAQ menu

            async def faq_sent():
                return any("What would you like to know" in (r.get("text") or "") for r in hook.received)
            await wait_for(faq_sent)
    assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'hand_back'") == 1


async def _delivered_count(hook, n):
    return len(hook.received) >= n
