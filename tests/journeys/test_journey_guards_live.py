"""Send-time guards with a manual clock: quiet hours across DST, the frequency cap across two
journeys by the contact's local day, STOP between scheduling and sending, busy contacts."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from gateway.domain.types import Channel, Inbound
from gateway.pipeline import intake

UTC = timezone.utc

ONE_SMS = """
name: reminder
entry: {event: booked}
steps:
  - id: wait_1h
    wait: {duration: 1h}
  - id: remind
    send: {template: t, channels: [sms, email]}
templates:
  t:
    variables: {name: {from: contact.name, default: there}}
    sms: "Hi {name}, see you soon"
    email: {subject: "See you soon", text: "Hi {name}"}
"""


async def test_send_due_at_night_waits_for_morning_across_spring_forward(journey_env):
    # Sat 2024-03-09 22:30 EST; the nudge is due at 23:30 EST, inside quiet hours (21:00-08:00).
    # The night is an hour shorter: 08:00 EDT is 12:00 UTC.
    async with journey_env(datetime(2024, 3, 10, 3, 30, tzinfo=UTC), ONE_SMS) as h:
        ev = await h.post_event("booked", {"phone": "+12125550100", "timezone": "America/New_York"})
        await h.advance(seconds=0)
        await h.advance(hours=1)
        assert await h.sends() == [] and await h.skips() == []       # deferred, not skipped
        due = await h.pool.fetchval(
            "SELECT due_at FROM timers WHERE kind = 'journey_step' AND state = 'pending'")
        assert due == datetime(2024, 3, 10, 12, 0, tzinfo=UTC)
        h.clock.set(datetime(2024, 3, 10, 11, 59, tzinfo=UTC))
        await h.advance(seconds=0)
        assert await h.sends() == []
        await h.advance(minutes=1)
        [send] = await h.sends()
        assert send["channel"] == "sms" and send["sent_at"] == datetime(2024, 3, 10, 12, 0, tzinfo=UTC)
        assert (await h.enrollment("reminder", ev["contact_id"]))["status"] == "completed"


async def test_time_zone_inferred_from_phone_when_profile_has_none(journey_env):
    # 2030-01-15 06:00 UTC: 22:00 in Los Angeles (+1 415) -> quiet until 08:00 PST = 16:00 UTC
    async with journey_env(datetime(2030, 1, 15, 5, 0, tzinfo=UTC), ONE_SMS) as h:
        await h.post_event("booked", {"phone": "+14155550100"})
        await h.advance(seconds=0)
        await h.advance(hours=1)
        assert await h.pool.fetchval(
            "SELECT due_at FROM timers WHERE kind = 'journey_step' AND state = 'pending'") == \
            datetime(2030, 1, 15, 16, 0, tzinfo=UTC)


LOW = """
name: promo_low
priority: 1
entry: {event: promo}
steps:
  - {id: low1, send: {template: t, channels: [sms]}}
  - {id: wait_2h, wait: {duration: 2h}}
  - {id: low2, send: {template: t, channels: [sms]}}
templates:
  t: {sms: "low priority offer"}
"""
HIGH = """
name: vip_high
priority: 10
entry: {event: vip}
steps:
  - {id: wait_2h, wait: {duration: 2h}}
  - {id: high1, send: {template: t, channels: [sms]}}
  - {id: wait_1h, wait: {duration: 1h}}
  - {id: high2, send: {template: t, channels: [sms]}}
  - {id: until_17, wait: {until: "17:00"}}
  - {id: high3, send: {template: t, channels: [sms]}}
  - {id: next_morning, wait: {until: "09:00"}}
  - {id: high4, send: {template: t, channels: [sms]}}
templates:
  t: {sms: "vip offer"}
"""


async def test_frequency_cap_across_two_journeys_by_local_day_and_priority(journey_env):
    # 09:00 in Los Angeles on 2030-01-15 (17:00 UTC); cap: 2 marketing nudges per local day
    async with journey_env(datetime(2030, 1, 15, 17, 0, tzinfo=UTC), LOW, HIGH) as h:
        person = {"phone": "+14155550123", "timezone": "America/Los_Angeles"}
        await h.post_event("promo", person)
        await h.post_event("vip", person)
        await h.advance(seconds=0)
        assert [s["step"] for s in await h.sends()] == ["low1"]
        await h.advance(hours=2)   # low2 and high1 both due; one slot left: the higher priority takes it
        assert [s["step"] for s in await h.sends()] == ["low1", "high1"]
        await h.advance(hours=1)   # high2: the day's cap is reached
        # 17:00 PST is 01:00 UTC the next day: a new UTC day, but the same local day -> still capped
        await h.advance(hours=5)
        assert [s["step"] for s in await h.sends()] == ["low1", "high1"]
        skips = [(s["journey"], s["step"], s["reason"]) for s in await h.skips()]
        assert skips == [("promo_low", "low2", "frequency_cap"), ("vip_high", "high2", "frequency_cap"),
                         ("vip_high", "high3", "frequency_cap")]
        low_skip = (await h.skips("promo_low"))[0]
        assert low_skip["details"]["yielded_to"] == ["vip_high"]
        await h.advance(hours=16)  # 09:00 the next local day
        assert [s["step"] for s in await h.sends()] == ["low1", "high1", "high4"]
        stats = await h.stats("vip_high")
        assert stats["totals"]["suppressed"] == {"frequency_cap": 2}
        assert stats["steps"]["high2"]["suppressed"] == {"frequency_cap": 1}


async def sms_from(h, phone: str, text: str, sid: str) -> None:
    """A customer SMS, stored and processed (keywords, hooks) like a webhook's."""
    result = await intake.accept(h.rt, Inbound(channel=Channel.SMS, provider="twilio", provider_message_id=sid,
                                               sender=phone, text=text))
    await h.rt.processor.drain(result.conversation_id)


async def test_stop_between_scheduling_and_sending_is_honoured_at_send_time(journey_env):
    async with journey_env(datetime(2030, 1, 15, 12, 0, tzinfo=UTC), ONE_SMS) as h:
        both = await h.post_event("booked", {"phone": "+14155550001", "email": "b@example.com", "timezone": "UTC"})
        phone_only = await h.post_event("booked", {"phone": "+14155550002", "timezone": "UTC"})
        await h.advance(seconds=0)          # reminders scheduled for 13:00
        await sms_from(h, "+14155550001", "STOP", "SM-stop-1")
        await sms_from(h, "+14155550002", "stop", "SM-stop-2")
        await h.advance(hours=1)
        sends = await h.sends()
        assert [(s["channel"], s["recipient_address"]) for s in sends] == [("email", "b@example.com")]
        [skip] = await h.skips()
        assert (skip["reason"], skip["details"]) == ("no_consent", {"channels": {"sms": "opted_out", "email": "no_address"}})
        assert skip["enrollment_id"] == (await h.enrollment("reminder", phone_only["contact_id"]))["id"]
        marketing_sms = await h.pool.fetchval(
            "SELECT count(*) FROM messages WHERE channel = 'sms' AND direction = 'out' AND purpose = 'marketing'")
        assert marketing_sms == 0
        assert both["contact_id"] != phone_only["contact_id"]


async def test_stop_after_the_nudge_was_queued_is_caught_by_the_outbox(journey_env):
    async with journey_env(datetime(2030, 1, 15, 12, 0, tzinfo=UTC), ONE_SMS) as h:
        await h.post_event("booked", {"phone": "+14155550003", "timezone": "UTC"})
        await h.advance(seconds=0)
        h.clock.advance(timedelta(hours=1))
        await h.fire()                                   # the SMS nudge is queued...
        await sms_from(h, "+14155550003", "STOP", "SM-stop-3")
        await h.send()                                   # ...and the outbox re-checks consent
        [send] = await h.sends()
        assert send["message_status"] == "failed"
        assert await h.pool.fetchval("SELECT error_code FROM messages WHERE id = $1", send["message_id"]) == \
            "opted_out"
        stats = await h.stats("reminder")
        assert stats["steps"]["remind"]["suppressed"] == {"outbox_opted_out": 1}


REPLY_FLOW = """
name: followup
quiet_hours: false
entry: {event: quote_sent}
steps:
  - {id: nudge, send: {template: t, channels: [sms]}}
  - id: wait_reply
    wait: {event: replied, timeout: 1d, on_event: after_reply, on_timeout: end}
  - id: after_reply
    branch:
      cases: [{if: {happened: replied, step: nudge}, goto: thanks}]
  - {id: thanks, send: {template: t, channels: [sms]}}
templates:
  t: {sms: "About your quote..."}
"""


async def test_reply_resumes_the_journey_and_nudges_wait_while_an_agent_handles_it(journey_env):
    async with journey_env(datetime(2030, 1, 15, 12, 0, tzinfo=UTC), REPLY_FLOW) as h:
        ev = await h.post_event("quote_sent", {"phone": "+14155550004"})
        await h.advance(seconds=0)
        # the reply lands in the thread; with no bot configured an agent picks it up
        await sms_from(h, "+14155550004", "yes, tell me more", "SM-reply-4")
        conv = await h.pool.fetchrow("SELECT id, mode FROM conversations WHERE contact_id = $1", ev["contact_id"])
        assert conv["mode"] == "agent"
        [nudge] = await h.sends()
        assert nudge["replied_at"] == h.clock.now()
        await h.advance(seconds=0)           # on_event -> branch (replied) -> thanks: postponed, agent busy
        assert len(await h.sends()) == 1 and await h.skips() == []
        await h.pool.execute("UPDATE conversations SET status = 'resolved' WHERE id = $1", conv["id"])
        await h.advance(minutes=30)
        assert [s["step"] for s in await h.sends()] == ["nudge", "thanks"]
        stats = await h.stats("followup")
        assert stats["steps"]["nudge"]["replied"] == 1


async def test_busy_contact_is_skipped_after_the_maximum_wait(journey_env):
    async with journey_env(datetime(2030, 1, 15, 9, 0, tzinfo=UTC), REPLY_FLOW) as h:
        ev = await h.post_event("quote_sent", {"phone": "+14155550005"})
        await h.pool.execute("UPDATE conversations SET mode = 'agent', status = 'open' WHERE contact_id = $1",
                             ev["contact_id"])
        for _ in range(13):
            await h.advance(minutes=30)
        assert await h.sends() == []
        [skip] = await h.skips()
        assert (skip["step"], skip["reason"], skip["details"]) == \
            ("nudge", "contact_busy", {"busy": "agent_conversation"})
