"""POST /api/v1/events: idempotency, batches validated as a whole, history, roles; bot-emitted events
and the journey steps that hand a customer to a flow, an agent, or update attributes."""
from __future__ import annotations

from datetime import datetime, timezone

ADMIN = {"Authorization": "Bearer admin-test-token"}

from gateway.domain import auth
from gateway.domain.events import emit_event
from gateway.domain.types import Effects

T0 = datetime(2030, 1, 15, 12, 0, tzinfo=timezone.utc)
WELCOME = """
name: welcome
quiet_hours: false
entry:
  event: signed_up
  conditions: [{field: attributes.plan, op: in, value: [trial, pro]}]
  reentry: {once_per: 7d}
steps:
  - {id: hello, send: {template: t, channels: [api]}}
templates:
  t:
    variables: {plan: {from: attributes.plan, default: free}}
    chat: {text: "Welcome to the {plan} plan", buttons: [{id: tour, title: Take the tour}]}
"""


async def post(h, body, headers=ADMIN):
    async with h.http.post(f"{h.url}/api/v1/events", json=body, headers=headers) as resp:
        return resp.status, await resp.json()


def event(eid, name="signed_up", **contact):
    return {"event_id": eid, "name": name, "contact": contact or {"external_id": "u-1"},
            "properties": {"source": "web"}, "occurred_at": "2030-01-15T11:59:00Z"}


async def test_duplicate_events_are_stored_once_and_enroll_once(journey_env):
    async with journey_env(T0, WELCOME) as h:
        first = event("evt-1", external_id="u-1", attributes={"plan": "trial"}, locale="es", timezone="Europe/Madrid")
        status, created = await post(h, first)
        assert status == 201 and created["duplicate"] is False
        status, again = await post(h, first)
        assert status == 200 and again == {**created, "duplicate": True}
        # a retried batch holding the same id, and a new trigger while the contact is in the journey
        status, batch = await post(h, {"events": [first, event("evt-2", external_id="u-1")]})
        assert status == 200 and (batch["accepted"], batch["duplicates"]) == (1, 1)
        assert await h.pool.fetchval("SELECT count(*) FROM events") == 2
        assert await h.pool.fetchval("SELECT count(*) FROM journey_enrollments") == 1
        await h.advance(seconds=0)
        [send] = await h.sends()
        assert send["body"] == "Welcome to the trial plan"
        assert send["content"]["buttons"] == [{"id": "tour", "title": "Take the tour"}]
        contact = await h.pool.fetchrow("SELECT attributes, locale, timezone FROM contacts WHERE id = $1",
                                        created["contact_id"])
        assert (contact["attributes"], contact["locale"], contact["timezone"]) == \
            ({"plan": "trial"}, "es", "Europe/Madrid")
        # visible in the contact's thread and through the API
        kinds = await h.pool.fetch(
            """SELECT content->>'name' AS name FROM messages m JOIN conversations c ON c.id = m.conversation_id
               WHERE c.contact_id = $1 AND m.kind = 'event' ORDER BY seq""", created["contact_id"])
        assert [k["name"] for k in kinds] == ["signed_up", "signed_up"]
        async with h.http.get(f"{h.url}/api/v1/events", params={"contact_id": created["contact_id"]},
                              headers=ADMIN) as resp:
            listed = await resp.json()
        assert [e["event_id"] for e in listed["events"]] == ["evt-2", "evt-1"]


async def test_conditions_and_reentry(journey_env):
    async with journey_env(T0, WELCOME) as h:
        await post(h, event("a-1", external_id="free-user", attributes={"plan": "free"}))
        await post(h, event("b-1", external_id="pro-user", attributes={"plan": "pro"}))
        await h.advance(seconds=0)
        [send] = await h.sends()
        assert send["body"] == "Welcome to the pro plan"
        await post(h, event("b-2", external_id="pro-user"))        # completed, but within 7 days
        await h.advance(days=8)
        await post(h, event("b-3", external_id="pro-user"))        # a week later: enters again
        await h.advance(seconds=0)
        assert len(await h.sends()) == 2


async def test_a_bad_batch_stores_nothing_and_names_index_and_field(journey_env):
    async with journey_env(T0, WELCOME) as h:
        good = event("ok-1", external_id="u-9")
        for bad, field in [({**good, "event_id": ""}, "event_id"), ({**good, "name": "no spaces"}, "name"),
                           ({**good, "occurred_at": "2030-01-15T10:00:00"}, "occurred_at"),
                           ({**good, "contact": {"phone": "not a phone"}}, "contact"),
                           ({**good, "contact": {"external_id": "x", "timezone": "Mars/Base"}}, "contact.timezone"),
                           ({**good, "properties": []}, "properties")]:
            status, body = await post(h, {"events": [good, bad]})
            assert status == 400, body
            assert (body["error"]["index"], body["error"]["field"]) == (1, field)
            assert body["error"]["message"].startswith(f"events[1].{field}")
        status, body = await post(h, {"events": [good, {**good, "event_id": "ok-2",
                                                          "contact": {"contact_id": 999999}}]})
        assert status == 400 and body["error"]["index"] == 1       # found only when storing: rolled back
        status, body = await post(h, {"events": [good] * 1001})
        assert status == 400 and body["error"]["field"] == "events"
        assert await h.pool.fetchval("SELECT count(*) FROM events") == 0
        assert await h.pool.fetchval("SELECT count(*) FROM contacts") == 0


async def test_roles(journey_env):
    async with journey_env(T0, WELCOME) as h:
        async with h.pool.acquire() as conn:
            _, integration = await auth.create_token(conn, name="crm", role="integration")
            _, readonly = await auth.create_token(conn, name="bi", role="readonly")
        status, _ = await post(h, event("r-1"), headers={})
        assert status == 401
        status, _ = await post(h, event("r-1"), headers={"Authorization": f"Bearer {readonly}"})
        assert status == 403
        status, _ = await post(h, event("r-1"), headers={"Authorization": f"Bearer {integration}"})
        assert status == 201
        async with h.http.get(f"{h.url}/api/v1/journeys/welcome/stats",
                              headers={"Authorization": f"Bearer {readonly}"}) as resp:
            assert resp.status == 200 and (await resp.json())["totals"]["entered"] == 0   # no plan attribute
        async with h.http.get(f"{h.url}/api/v1/journeys/nope/stats", headers=ADMIN) as resp:
            assert resp.status == 404
        async with h.http.get(f"{h.url}/api/v1/journeys", headers=ADMIN) as resp:
            assert [j["name"] for j in (await resp.json())["journeys"]] == ["welcome"]


BOT_TRIGGERED = """
name: quote_followup
quiet_hours: false
entry: {event: quote_sent, require: [quote_id]}
steps:
  - {id: tag, update: {attributes: {quote_followup: true}}}
  - {id: wait_2d, wait: {duration: 2d}}
  - id: split
    split:
      - {variant: to_bot, weight: 50, goto: to_sales_bot}
      - {variant: to_agent, weight: 50, goto: to_agent}
  - {id: to_sales_bot, flow: {name: sales, state: follow_up}, next: end}
  - {id: to_agent, escalate: {reason: quote_follow_up, summary: "Quote not answered in 2 days"}}
"""


async def test_a_flow_emitted_event_starts_a_journey_that_hands_over_to_a_flow_or_an_agent(journey_env):
    async with journey_env(T0, BOT_TRIGGERED) as h:
        contact_ids = []
        async with h.pool.acquire() as conn:
            for n in range(6):
                contact_ids.append(await conn.fetchval(
                    "INSERT INTO contacts (name) VALUES ($1) RETURNING id", f"lead {n}"))
            effects = Effects()
            async with conn.transaction():
                rows = [await emit_event(conn, h.rt, cid, "quote_sent", {"quote_id": f"q{cid}"}, effects)
                        for cid in contact_ids]
        assert all(r["source"] == "flow" for r in rows)
        await h.advance(seconds=0)
        attrs = await h.pool.fetch("SELECT attributes FROM contacts ORDER BY id")
        assert all(a["attributes"] == {"quote_followup": True} for a in attrs)
        await h.advance(days=2)
        enrollments = await h.pool.fetch("SELECT * FROM journey_enrollments ORDER BY contact_id")
        assert all(e["status"] == "completed" for e in enrollments)
        variants = {e["variant"] for e in enrollments}
        assert variants == {"to_bot", "to_agent"}
        for e in enrollments:
            conv = await h.pool.fetchrow("SELECT * FROM conversations WHERE id = $1", e["conversation_id"])
            last = await h.pool.fetchval(
                "SELECT content->>'event' FROM messages WHERE conversation_id = $1 ORDER BY seq DESC LIMIT 1",
                conv["id"])
            if e["variant"] == "to_bot":
                assert (conv["mode"], conv["flow_name"], conv["flow_state"], last) == \
                    ("bot", "sales", "follow_up", "flow_handoff")
            else:
                assert (conv["mode"], conv["status"], last) == ("agent", "open", "escalated")
