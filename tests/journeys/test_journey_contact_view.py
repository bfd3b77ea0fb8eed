"""A contact's journeys as an agent sees them (GET /api/v1/contacts/{id}/journeys): the step, when
the next action is due, what was sent and every skip with its reason; keywords are not replies."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from test_journey_guards_live import REPLY_FLOW, sms_from

UTC = timezone.utc
ADMIN = {"Authorization": "Bearer admin-test-token"}


async def view(h, contact_id: int) -> list[dict]:
    async with h.http.get(f"{h.url}/api/v1/contacts/{contact_id}/journeys", headers=ADMIN) as resp:
        assert resp.status == 200, await resp.text()
        return (await resp.json())["journeys"]


async def test_the_contact_view_shows_step_next_action_sends_and_skips(journey_env):
    start = datetime(2030, 1, 15, 12, 0, tzinfo=UTC)
    async with journey_env(start, REPLY_FLOW) as h:
        ev = await h.post_event("quote_sent", {"phone": "+14155550011"})
        await h.advance(seconds=0)
        [j] = await view(h, ev["contact_id"])
        assert (j["journey"], j["status"], j["waiting_event"]) == ("followup", "active", "replied"), j
        assert datetime.fromisoformat(j["next_action_at"]) == start + timedelta(days=1)
        assert [(s["step"], s["channel"], s["status"]) for s in j["sends"]] == [("nudge", "sms", "sent")]
        assert j["skips"] == []

        busy = await h.post_event("quote_sent", {"phone": "+14155550012"})
        await h.pool.execute("UPDATE conversations SET mode = 'agent', status = 'open' WHERE contact_id = $1",
                             busy["contact_id"])
        for _ in range(13):
            await h.advance(minutes=30)
        [j] = await view(h, busy["contact_id"])
        assert j["sends"] == [] and [(s["step"], s["reason"], s["details"]) for s in j["skips"]] == \
            [("nudge", "contact_busy", {"busy": "agent_conversation"})]


async def test_keywords_are_not_replies_to_a_nudge(journey_env):
    async with journey_env(datetime(2030, 1, 15, 12, 0, tzinfo=UTC), REPLY_FLOW) as h:
        ev = await h.post_event("quote_sent", {"phone": "+14155550013"})
        await h.advance(seconds=0)
        await sms_from(h, "+14155550013", "HELP", "SM-help-13")
        [nudge] = await h.sends()
        assert nudge["replied_at"] is None
        assert (await h.enrollment("followup", ev["contact_id"]))["waiting_event"] == "replied"
        await sms_from(h, "+14155550013", "yes please", "SM-yes-13")
        [nudge] = await h.sends()
        assert nudge["replied_at"] is not None
        assert (await h.stats("followup"))["steps"]["nudge"]["replied"] == 1


ALWAYS = """
name: price_watch
quiet_hours: false
entry: {event: price_dropped, reentry: always}
steps:
  - {id: wait, wait: {duration: 1h}}
  - {id: tell, send: {template: t, channels: [sms]}}
templates:
  t: {sms: "The price dropped"}
"""


async def test_reentry_always_enters_again_on_every_event(journey_env):
    async with journey_env(datetime(2030, 1, 15, 12, 0, tzinfo=UTC), ALWAYS) as h:
        contact = {"phone": "+14155550014"}
        ev = await h.post_event("price_dropped", contact, event_id="p-1")
        await h.advance(minutes=10)
        await h.post_event("price_dropped", contact, event_id="p-2")
        await h.advance(minutes=10)
        journeys = await view(h, ev["contact_id"])
        assert [(j["status"], j["exit_reason"]) for j in journeys] == [("active", None), ("exited", "reentered")]
        await h.advance(hours=1)
        assert len(await h.sends()) == 1, "only the run in progress sends"


async def test_an_event_can_say_why_it_started_no_journey(journey_env):
    async with journey_env(datetime(2030, 1, 15, 12, 0, tzinfo=UTC), REPLY_FLOW, ALWAYS) as h:
        async def post(event_id: str, debug: bool = True) -> dict:
            body = {"event_id": event_id, "name": "quote_sent", "contact": {"phone": "+14155550015"}}
            async with h.http.post(f"{h.url}/api/v1/events", params={"debug": "true"} if debug else {},
                                   json=body, headers=ADMIN) as resp:
                assert resp.status == 201, await resp.text()
                return await resp.json()

        first = await post("q-1")
        assert sorted((j["journey"], j["entered"], j["reason"]) for j in first["journeys"]) == [
            ("followup", True, None), ("price_watch", False, "entered_by:price_dropped")]
        again = await post("q-2")
        assert ("followup", False, "reentry_never") in [(j["journey"], j["entered"], j["reason"])
                                                         for j in again["journeys"]]
        assert "journeys" not in await post("q-3", debug=False)
